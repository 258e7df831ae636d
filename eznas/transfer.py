"""Leave-one-family-out transfer: what to expect of an evolved proxy on a search space it never saw.

For each search-space family F (`FAMILIES`: NB201, NDS cell sweeps, NDS AnyNet sweeps, NB101,
NB301) a fold evolves with F left out entirely (one evolution task per other family), chooses its
program among the hall of fame by a policy of `eznas.report.choose`, never looking at F (default
``accuracy``: the fittest on the pools; ``validation`` scores the hall of fame on validation networks
of the other families first), exports it, and scores it on F's networks beside every baseline, on
the same networks and batch
(`eznas.evaluate`). Evolution resumes from its run directory and scoring from the score cache,
so a killed fold goes on where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from eznas import config as config_mod
from eznas import evolve, proxies
from eznas.errors import EznasError
from eznas.evaluate import Evaluation, evaluate_tasks
from eznas.export import export_run
from eznas.parallel import Parallel
from eznas.report import chosen_rank
from eznas.run import CHECKPOINT, read_checkpoint


@dataclass(frozen=True)
class Family:
    """A search-space family as the transfer protocol uses it."""

    name: str  # `eznas.tasks.family` of its tasks
    evolve: str  # evolved on when the family is in a fold's evolution set
    validate: str  # its validation networks (disjoint from the pool) choose the program under policy validation
    score: tuple[str, ...]  # scored when the family is left out


FAMILIES = (
    Family("nb201", "nb201:cifar10", "nb201:cifar100", ("nb201:cifar10", "nb201:cifar100", "nb201:ImageNet16-120")),
    Family("nds-cell", "nds:DARTS_in", "nds:Amoeba_in",
           ("nds:DARTS_in", "nds:Amoeba_in", "nds:NASNet_in", "nds:ENAS_in", "nds:PNAS_in")),
    Family("nds-anynet", "nds:ResNeXt-A_in", "nds:ResNeXt-B_in", ("nds:ResNeXt-A_in", "nds:ResNeXt-B_in")),
    Family("nb101", "nb101:cifar10", "nb101:cifar10", ("nb101:cifar10",)),
    Family("nb301", "nb301:cifar10", "nb301:cifar10", ("nb301:cifar10",)),
)
NAMES = tuple(f.name for f in FAMILIES)
POLICY = "accuracy"  # the fold's choice: beat `validation` on all four runs of results/transfer_oracle.md


def family(name: str) -> Family:
    """The family called ``name``; `EznasError` naming the known ones otherwise."""
    for f in FAMILIES:
        if f.name == name:
            return f
    raise EznasError(f"unknown family {name!r}: use one of {', '.join(NAMES)}")


def fold_config(base: config_mod.Config, left_out: str) -> config_mod.Config:
    """``base`` with its tasks replaced: evolve on one task of every other family, validate on theirs."""
    kept = [f for f in FAMILIES if f.name != family(left_out).name]
    tasks = replace(base.tasks, evolve=tuple(f.evolve for f in kept), heldout=(),
                    validate=tuple(dict.fromkeys(f.validate for f in kept)))
    return config_mod.from_dict(replace(base, tasks=tasks).to_dict(), source=f"fold without {left_out}")


def evolve_fold(base: config_mod.Config, left_out: str, runs: Path, proxies: Path, data_dir: str | None = None,
                cache_dir: str | None = None, echo: Callable[[str], None] = print, policy: str = POLICY) -> Path:
    """Evolve the fold without ``left_out`` in ``runs/without-<family>`` (resuming it if it stopped), choose
    its program by ``policy`` (one of `eznas.report.POLICIES`) and export it as ``proxies/without-<family>.py``
    + ``.json``; returns the record."""
    cfg = fold_config(base, left_out)
    out = runs / f"without-{left_out}"
    done = (out / CHECKPOINT).exists() and read_checkpoint(out)["next_generation"] > cfg.evolution.generations
    if not done:
        echo(f"fold without {left_out}: evolving on {', '.join(cfg.tasks.evolve)}")
        evolve.run(cfg, out, resume=(out / CHECKPOINT).exists(), data_dir=data_dir, cache_dir=cache_dir, echo=echo)
    rank = chosen_rank(out, policy, data_dir, cache_dir)
    _, record, infix = export_run(out, rank, proxies / f"without-{left_out}.py", data_dir=data_dir, cache_dir=cache_dir)
    echo(f"fold without {left_out}: hall-of-fame rank {rank} chosen by policy {policy}: {infix}")
    return record


def score_fold(record: Path, left_out: str, n: int | None, whole_n: int | None, seed: int = 0,
               parallel: Parallel = Parallel(), data_dir: str | None = None, cache_dir: str | None = None,
               scores_dir: str | None = None, baselines: list[str] | None = None) -> dict[str, list[Evaluation]]:
    """The fold's program (its record, scored by the engine) and the baselines (default: every one) on the
    left-out family's tasks: ``n`` networks per NB201 dataset, ``whole_n`` per other task (None: all)."""
    baselines = proxies.names() if baselines is None else baselines
    *_, (_, results) = evaluate_tasks([str(record), *baselines], family(left_out).score, n, whole_n, seed, parallel,
                                      str(record), data_dir=data_dir, cache_dir=cache_dir, scores_dir=scores_dir)
    return results
