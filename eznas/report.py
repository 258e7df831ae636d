"""``eznas inspect``: a run's hall of fame and Pareto front with held-out taus, and its fitness plot; with
``--summary`` (`summary`), only the chosen program beside baselines on the held-out networks.

Policies choose the row marked ``>>>>`` (PySR style):

- ``accuracy``: the highest pool fitness.
- ``parsimony``: the smallest program whose pool fitness is within 0.01 of the highest.
- ``validation``: the smallest program whose mean tau on the validation tasks (``tasks.validate``:
  networks disjoint from the pools, never used for fitness) is within 0.01 of the highest; the
  policy behind the published proxy, so that the pick is not the program most fitted to the pools.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eznas import benchmarks
from eznas import gp as programs
from eznas.cache import StatsCache
from eznas.errors import EznasError
from eznas.files import write_atomic
from eznas.fitness import Evaluator, evaluate
from eznas.plots import plot_fitness
from eznas.pool import load_pool
from eznas.run import (heldout_records, read_checkpoint, read_heldout, read_run, validation_records,
                       write_heldout)
from eznas.statsbatch import StatsBatch, concat
from eznas.tables.runs import front_csv, table, versus_table

POLICIES = ("accuracy", "parsimony", "validation")
CLOSE = 0.01  # parsimony and validation: programs this close to the best count as equally good
BASELINES = {"params": "log_params", "FLOPs": "log_flops", "snip": "log_snip_total", "naswot": "naswot"}
"""Baselines of `summary`, as the probe statistics they rank by (a log ranks as the value does): parameter count,
FLOPs, SNIP's sum |W * dW| (Lee et al. 2019) and NASWOT's logdet (Mellor et al. 2021, per sample)."""


def choose(rows: list[dict[str, Any]], policy: str, validation: dict[str, float] | None = None) -> int:
    """Index of the row a selection policy picks (``validation``: program -> mean validation tau)."""
    if policy not in POLICIES:
        raise EznasError(f"unknown policy {policy!r}: use {', '.join(POLICIES)}")
    if not rows:
        return 0
    if policy == "validation":
        if not validation:
            raise EznasError("policy 'validation' needs validation taus: the run's config must name "
                             "tasks.validate, and held-out scoring must not be skipped")
        score = [validation[r["expr"]] for r in rows]
        close = [i for i, v in enumerate(score) if v >= max(score) - CLOSE]
        return min(close, key=lambda i: (rows[i]["size"], -score[i]))
    top = max(r["fitness"] for r in rows)
    if policy == "accuracy":
        return min(i for i, r in enumerate(rows) if r["fitness"] == top)
    close = [i for i, r in enumerate(rows) if r["fitness"] >= top - CLOSE]
    return min(close, key=lambda i: (rows[i]["size"], -rows[i]["fitness"]))


def unseen_taus(out: Path, exprs: list[str], data_dir: str | None = None, cache_dir: str | None = None,
                echo: Callable[[str], None] = print, tasks: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Kendall tau-b of each program on ``tasks`` (default: every validation and held-out task of the run;
    program -> task -> tau), on networks it never evolved on; cached in ``heldout.json``, so only new programs
    and tasks are scored. Says on ``echo`` what it scores (a first look may probe the networks: minutes, with a
    progress bar)."""
    run = read_run(out, data_dir)
    cfg = run.config
    tasks = [*cfg.tasks.validate, *cfg.tasks.heldout] if tasks is None else list(tasks)
    known = read_heldout(out)
    todo = [e for e in exprs if not set(tasks) <= set(known.get(e, {}))]
    if todo and tasks:
        cache = StatsCache(cache_dir) if cache_dir else StatsCache()
        needs = set(cfg.evolution.statistics).union(*(programs.statistics_of(programs.parse(e)) for e in todo))
        for task in tasks:
            validating = task in cfg.tasks.validate
            records = (validation_records(task, cfg, run.pools, data_dir) if validating else
                       heldout_records(task, cfg, run.used, data_dir))
            echo(f"scoring {len(todo)} programs on {len(records)} unseen networks of {task} (statistics cached"
                 + (")" if validating else "; --no-heldout skips this)"))
            batch = load_pool(task, records, cfg.probe, cache, cfg.run.parallel, data_dir, needs=needs)
            evaluator = Evaluator(batch)
            for e in todo:
                known.setdefault(e, {})[task] = evaluate(evaluator, programs.parse(e), penalise_ties=False).taus[task]
        write_heldout(out, known)
    return {e: known.get(e, {}) for e in exprs}


def mean_taus(taus: dict[str, dict[str, float]], tasks: Sequence[str]) -> dict[str, float]:
    """Each program's mean tau over ``tasks`` (programs lacking one of them are left out)."""
    return {e: float(np.mean([t[k] for k in tasks])) for e, t in taus.items() if tasks and set(tasks) <= set(t)}


def _rendered(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its infix form rendered from its parsed program (never the file's own text,
    which could hold terminal control characters)."""
    return {**row, "infix": programs.infix(programs.parse(row["expr"]))}


def inspect_run(out: str | os.PathLike, top: int = 10, policy: str = "accuracy", heldout: bool = True,
                data_dir: str | None = None, cache_dir: str | None = None, formulas: bool = True,
                latex: bool = False) -> str:
    """The text report of a run directory (hall of fame, Pareto front), writing fitness.png and front.csv.

    ``formulas``: show each program as its simplest form that scores as the program does on every
    network of the run's pools (`eznas.simplify.verified`); ``latex``: add each one's LaTeX.
    """
    out = Path(out)
    ckpt = read_checkpoint(out)
    cfg = read_run(out, data_dir).config
    hof = [_rendered(r) for r in ckpt["hall_of_fame"][:top]]
    front = [_rendered(r) for r in ckpt["pareto_front"]]
    unseen = unseen_taus(out, [r["expr"] for r in hof + front], data_dir, cache_dir) if heldout else {}
    validation = mean_taus(unseen, cfg.tasks.validate)
    columns = {"valid": validation, "heldout": mean_taus(unseen, cfg.tasks.heldout)}
    plot = plot_fitness(out, ckpt["history"]) if ckpt["history"] else None
    kinds = {**{t: "heldout" for t in cfg.tasks.heldout}, **{t: "validate" for t in cfg.tasks.validate}}
    write_atomic(out / "front.csv", front_csv(front, unseen, kinds))
    forms = readable_forms(out, [r["expr"] for r in hof + front], data_dir, cache_dir) if formulas else {}
    shown_hof, shown_front = ([{**r, "infix": _form_text(forms[r["expr"]])} for r in rows] if forms else rows
                              for rows in (hof, front))
    done = ckpt["next_generation"] - 1
    note = "".join(f"\n'{name}': mean tau over {', '.join(tasks)} (heldout.json)" for name, tasks in
                   (("valid", cfg.tasks.validate), ("heldout", cfg.tasks.heldout)) if tasks and unseen)
    if cfg.tasks.relative_to:
        note += (f"\n'fitness': {cfg.tasks.aggregate} of each task's margin over the best of "
                 f"{', '.join(cfg.tasks.relative_to)} (tasks.relative_to); the task columns are the program's own taus")
    if forms:
        note += ("\nformulas: " + ", ".join(f"'{mark}' {meaning}" for mark, meaning in _MARKS.items())
                 + "; each scores as its program on every pool network (--raw shows the programs)")
    parts = [f"run {out}: generation {done} of {cfg.evolution.generations}, "
             f"{len(ckpt['scored'])} programs scored on the whole pool, {ckpt['elapsed'] / 60:.1f} min",
             f"\nHall of fame (policy '{policy}' marks >>>>):",
             table(shown_hof, choose(hof, policy, validation), columns),
             "\nPareto front (size vs pool fitness):",
             table(shown_front, choose(front, policy, validation), columns) + note]
    if latex and forms:
        parts += ["\nLaTeX of the hall of fame:"] + [f"{i:>4}  {forms[r['expr']].latex}" for i, r in enumerate(hof)]
    if plot:
        parts.append(f"\nwrote {plot} and {out / 'front.csv'}")
    return "\n".join(parts)


def readable_forms(out: Path, exprs: list[str], data_dir: str | None = None, cache_dir: str | None = None,
                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Each program's simplest form verified on the run's evolution pools (program -> `eznas.simplify.Simplified`)."""
    from eznas.simplify import verified  # sympy: loaded only when formulas are asked for

    batch = pool_batch(out, data_dir, cache_dir)
    distinct = list(dict.fromkeys(exprs))
    echo(f"simplifying {len(distinct)} programs, checked on the {batch.n_nets} pool networks (--raw skips this)")
    return {e: verified(e, batch) for e in distinct}


def pool_batch(out: Path, data_dir: str | None = None, cache_dir: str | None = None) -> StatsBatch:
    """The statistics of the run's evolution pools that its programs may read (from the cache; what is
    missing is computed)."""
    run = read_run(out, data_dir)
    cfg = run.config
    cache = StatsCache(cache_dir) if cache_dir else StatsCache()
    parts = []
    for task, indices in run.pools.items():
        everything = benchmarks.load_task(task, data_dir)
        parts.append(load_pool(task, [everything[i] for i in indices], cfg.probe, cache, cfg.run.parallel, data_dir,
                               needs=cfg.evolution.statistics))
    return concat(parts)


def summary(out: str | os.PathLike, policy: str = "validation", data_dir: str | None = None,
            cache_dir: str | None = None) -> str:
    """``eznas inspect --summary``: the program a policy picks, as its verified formula, with its Kendall tau on
    every held-out task beside the `BASELINES` on the same networks and batch, and the fitness plot's path."""
    out = Path(out)
    ckpt = read_checkpoint(out)
    run = read_run(out, data_dir)
    if not run.config.tasks.heldout or not ckpt["hall_of_fame"]:
        raise EznasError(f"--summary: {out} has no held-out tasks or no scored program; name tasks.heldout "
                         "in the config and let the run finish a generation")
    rank = chosen_rank(out, policy, data_dir, cache_dir)
    row = ckpt["hall_of_fame"][rank]
    names = {"evolved": row["expr"], **BASELINES}
    unseen = unseen_taus(out, list(names.values()), data_dir, cache_dir)
    form = readable_forms(out, [row["expr"]], data_dir, cache_dir)[row["expr"]]
    counts = {t: len(heldout_records(t, run.config, run.used, data_dir)) for t in run.config.tasks.heldout}
    taus = {t: {name: unseen[e][t] for name, e in names.items()} for t in counts}
    valid = mean_taus(unseen, run.config.tasks.validate).get(row["expr"])
    picked = f"rank {rank} of {len(ckpt['hall_of_fame'])} by policy '{policy}', pool fitness {row['fitness']:.4f}"
    picked += f", validation tau {valid:.4f}" if valid is not None else ""
    return "\n".join([f"chosen program ({picked}):", f"  score = {form.text}    ({_mark(form)} {_MARKS[_mark(form)]})",
                       "\nKendall tau on held-out networks (never used for fitness or choice; same networks and "
                       "batch in every column):", versus_table(taus, counts),
                       "baselines are probe statistics: " + ", ".join(f"{k} = {v}" for k, v in BASELINES.items()),
                       f"\nfitness plot: {plot_fitness(out, ckpt['history'])}"])


_MARKS = {"=": "simplified exactly", "~": "simplified with facts true on every pool network", ".": "as evolved"}
_MARK_OF_CHECK = {"exact": "=", "pool-verified": "~", "as evolved": "."}  # `eznas.simplify.Simplified.check`


def _mark(form: Any) -> str:
    """How a formula (`eznas.simplify.Simplified`) was checked, as one of the `_MARKS`."""
    return _MARK_OF_CHECK[form.check]


def _form_text(form: Any) -> str:
    return f"{_mark(form)} {form.text}"


def chosen_rank(out: str | os.PathLike, policy: str, data_dir: str | None = None, cache_dir: str | None = None) -> int:
    """The hall-of-fame rank a selection policy picks (scoring the programs on validation networks first
    for ``validation``)."""
    out = Path(out)
    hof = read_checkpoint(out)["hall_of_fame"]
    validation = {}
    if policy == "validation":
        validate = read_run(out, data_dir).config.tasks.validate
        taus = unseen_taus(out, [r["expr"] for r in hof], data_dir, cache_dir, tasks=validate)  # held-out ones unneeded
        validation = mean_taus(taus, validate)
    return choose(hof, policy, validation)
