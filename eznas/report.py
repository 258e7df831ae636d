"""Reading a run directory: hall of fame and Pareto tables, held-out taus, fitness plot.

Policies choose the row marked ``>>>>`` (PySR style):

- ``accuracy``: the highest pool fitness.
- ``parsimony``: the smallest program whose pool fitness is within 0.01 of the highest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eznas import benchmarks, config as config_mod
from eznas import gp as programs
from eznas.cache import StatsCache
from eznas.errors import EznasError
from eznas.evolve import CHECKPOINT, derive_seed, pool_records, read_checkpoint
from eznas.export import read_record
from eznas.fitness import Evaluator, evaluate
from eznas.pool import load_pool
from eznas.tasks import parse_task

POLICIES = ("accuracy", "parsimony")
HELDOUT_FILE = "heldout.json"


def choose(rows: list[dict[str, Any]], policy: str) -> int:
    """Index of the row a selection policy picks."""
    if policy not in POLICIES:
        raise EznasError(f"unknown policy {policy!r}: use {' or '.join(POLICIES)}")
    if not rows:
        return 0
    top = max(r["fitness"] for r in rows)
    if policy == "accuracy":
        return min(i for i, r in enumerate(rows) if r["fitness"] == top)
    close = [i for i, r in enumerate(rows) if r["fitness"] >= top - 0.01]
    return min(close, key=lambda i: (rows[i]["size"], -rows[i]["fitness"]))


def used_indices(pools: dict[str, list[int]], task: str) -> set[int]:
    """Benchmark indices of ``task``'s space that an evolution run used (its ``pools``).

    NB201 datasets share one index space (the same architectures), so an NB201 network used on
    any dataset counts; an NDS file is its own space.
    """
    target = parse_task(task)
    used: set[int] = set()
    for t, idx in pools.items():
        pt = parse_task(t)
        if pt.space == target.space and (pt.space == "nb201" or pt.key == target.key):
            used.update(idx)
    return used


@dataclass(frozen=True)
class RunInfo:
    """What evaluations need of an evolution run: its config, pools and fitness per generation."""

    config: config_mod.Config
    pools: dict[str, list[int]]  # task -> benchmark indices
    history: list[dict[str, Any]]  # per generation: gen, best, median, hof_fitness, ...


def is_record(source: str | os.PathLike) -> bool:
    """Whether ``source`` names an exported ``.json`` run record rather than a run directory."""
    path = Path(source)
    return path.suffix == ".json" and not path.is_dir()


def read_run(source: str | os.PathLike, data_dir: str | None = None) -> RunInfo:
    """An evolution run from its directory, or from the ``.json`` record that ``eznas export``
    wrote of one of its programs (then the pools are drawn again from the record's config, as the
    run drew them: `evolve.pool_records`), so held-out evaluations need no run directory."""
    path = Path(source)
    if is_record(path):
        record = read_record(path, "run record")
        cfg = config_mod.from_dict(record["config"], source=str(path))
        pools = {t: [r["index"] for r in pool_records(cfg, t, data_dir)] for t in cfg.tasks.evolve}
        return RunInfo(cfg, pools, record["fitness_history"])
    ckpt = read_checkpoint(path)
    return RunInfo(config_mod.from_dict(ckpt["config"], source=str(path / CHECKPOINT)), ckpt["pools"], ckpt.get("history", []))


def heldout_records(task: str, cfg: config_mod.Config, pools: dict[str, list[int]], data_dir: str | None) -> list[dict[str, Any]]:
    """Held-out networks of ``task``: a seeded sample disjoint from every evolution pool of the same space."""
    records = benchmarks.sample(task, cfg.tasks.heldout_size, derive_seed(cfg.run.seed, "heldout", task), data_dir,
                                exclude=used_indices(pools, task))
    return sorted(records, key=lambda r: r["index"])


def heldout_taus(out: Path, exprs: list[str], data_dir: str | None = None, cache_dir: str | None = None) -> dict[str, dict[str, float]]:
    """Kendall tau of each program on every held-out task (cached in ``heldout.json``)."""
    run = read_run(out)
    cfg = run.config
    path = out / HELDOUT_FILE
    known: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [e for e in exprs if e not in known or set(known[e]) != set(cfg.tasks.heldout)]
    if todo and cfg.tasks.heldout:
        cache = StatsCache(cache_dir) if cache_dir else StatsCache()
        for task in cfg.tasks.heldout:
            records = heldout_records(task, cfg, run.pools, data_dir)
            batch = load_pool(task, records, cfg.probe, cache, cfg.run.n_jobs, cfg.run.backend, cfg.run.address, data_dir,
                              retries=cfg.run.retries, timeout=cfg.run.job_timeout)
            evaluator = Evaluator(batch)
            for e in todo:
                known.setdefault(e, {})[task] = evaluate(evaluator, programs.parse(e), penalise_ties=False).taus[task]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    return {e: known.get(e, {}) for e in exprs}


def table(rows: list[dict[str, Any]], chosen: int, heldout: dict[str, dict[str, float]]) -> str:
    """Fixed-width table: rank, size, depth, pool fitness, tau per task, mean held-out tau, expression."""
    if not rows:
        return "(no programs scored yet)"
    tasks = list(rows[0]["taus"])
    htasks = sorted({t for h in heldout.values() for t in h})
    head = f"{'':4} {'rank':>4} {'size':>4} {'depth':>5} {'fitness':>8} " + " ".join(f"{_short(t):>10}" for t in tasks)
    head += (f" {'heldout':>8}" if htasks else "") + "  expression"
    lines = [head]
    for i, r in enumerate(rows):
        h = heldout.get(r["expr"], {})
        cells = " ".join(f"{r['taus'][t]:>10.4f}" for t in tasks)
        hcell = f" {np.mean(list(h.values())):>8.4f}" if h else (" " * 9 if htasks else "")
        mark = ">>>>" if i == chosen else ""
        lines.append(f"{mark:4} {i:>4} {r['size']:>4} {r['depth']:>5} {r['fitness']:>8.4f} {cells}{hcell}  {r['infix']}")
    if htasks:
        lines.append("held-out tau per task (" + ", ".join(htasks) + ") in heldout.json; 'heldout' is their mean")
    return "\n".join(lines)


def _short(task: str) -> str:
    return task.split(":", 1)[1][:10]


def plot_fitness(out: Path, history: list[dict[str, Any]]) -> Path:
    """Write ``fitness.png``: best and median sample fitness and hall-of-fame pool fitness per generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [h["gen"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(gens, [h["best"] for h in history], label="best (generation sample)")
    ax.plot(gens, [h["median"] for h in history], label="median (generation sample)")
    ax.plot(gens, [h["hof_fitness"] for h in history], label="hall of fame (whole pool)")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (Kendall tau)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "fitness.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def inspect_run(out: str | os.PathLike, top: int = 10, policy: str = "accuracy", heldout: bool = True,
                data_dir: str | None = None, cache_dir: str | None = None) -> str:
    """The text report of a run directory (hall of fame, Pareto front), writing fitness.png and front.csv."""
    out = Path(out)
    ckpt = read_checkpoint(out)
    hof = ckpt["hall_of_fame"][:top]
    front = ckpt["pareto_front"]
    ho = heldout_taus(out, [r["expr"] for r in hof + front], data_dir, cache_dir) if heldout else {}
    plot = plot_fitness(out, ckpt["history"]) if ckpt["history"] else None
    _write_front_csv(out / "front.csv", front, ho)
    done = ckpt["next_generation"] - 1
    parts = [f"run {out}: generation {done} of {ckpt['config']['evolution']['generations']}, "
             f"{len(ckpt['scored'])} programs scored on the whole pool, {ckpt['elapsed'] / 60:.1f} min",
             f"\nHall of fame (policy '{policy}' marks >>>>):", table(hof, choose(hof, policy), ho),
             "\nPareto front (size vs pool fitness):", table(front, choose(front, policy), ho)]
    if plot:
        parts.append(f"\nwrote {plot} and {out / 'front.csv'}")
    return "\n".join(parts)


def _write_front_csv(path: Path, front: list[dict[str, Any]], heldout: dict[str, dict[str, float]]) -> None:
    import csv
    import io

    tasks = list(front[0]["taus"]) if front else []
    htasks = sorted({t for h in heldout.values() for t in h})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["size", "depth", "fitness", *tasks, *(f"heldout:{t}" for t in htasks), "infix", "expr"])
    for r in front:
        h = heldout.get(r["expr"], {})
        w.writerow([r["size"], r["depth"], f"{r['fitness']:.6f}", *(f"{r['taus'][t]:.6f}" for t in tasks),
                    *(f"{h[t]:.6f}" if t in h else "" for t in htasks), r["infix"], r["expr"]])
    path.write_text(buf.getvalue())
