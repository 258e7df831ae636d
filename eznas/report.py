"""``eznas inspect``: a run's hall of fame and Pareto front with held-out taus, and its fitness plot.

Policies choose the row marked ``>>>>`` (PySR style):

- ``accuracy``: the highest pool fitness.
- ``parsimony``: the smallest program whose pool fitness is within 0.01 of the highest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eznas import gp as programs
from eznas.cache import StatsCache
from eznas.errors import EznasError
from eznas.files import write_atomic
from eznas.fitness import Evaluator, evaluate
from eznas.plots import plot_fitness
from eznas.pool import load_pool
from eznas.run import heldout_records, read_checkpoint, read_heldout, read_run, write_heldout
from eznas.tables.runs import front_csv, table

POLICIES = ("accuracy", "parsimony")


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


def heldout_taus(out: Path, exprs: list[str], data_dir: str | None = None, cache_dir: str | None = None) -> dict[str, dict[str, float]]:
    """Kendall tau of each program on every held-out task (cached in ``heldout.json``)."""
    run = read_run(out)
    cfg = run.config
    known = read_heldout(out)
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
        write_heldout(out, known)
    return {e: known.get(e, {}) for e in exprs}


def _rendered(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its infix form rendered from its parsed program (never the file's own text,
    which could hold terminal control characters)."""
    return {**row, "infix": programs.infix(programs.parse(row["expr"]))}


def inspect_run(out: str | os.PathLike, top: int = 10, policy: str = "accuracy", heldout: bool = True,
                data_dir: str | None = None, cache_dir: str | None = None) -> str:
    """The text report of a run directory (hall of fame, Pareto front), writing fitness.png and front.csv."""
    out = Path(out)
    ckpt = read_checkpoint(out)
    hof = [_rendered(r) for r in ckpt["hall_of_fame"][:top]]
    front = [_rendered(r) for r in ckpt["pareto_front"]]
    ho = heldout_taus(out, [r["expr"] for r in hof + front], data_dir, cache_dir) if heldout else {}
    plot = plot_fitness(out, ckpt["history"]) if ckpt["history"] else None
    write_atomic(out / "front.csv", front_csv(front, ho))
    done = ckpt["next_generation"] - 1
    parts = [f"run {out}: generation {done} of {ckpt['config']['evolution']['generations']}, "
             f"{len(ckpt['scored'])} programs scored on the whole pool, {ckpt['elapsed'] / 60:.1f} min",
             f"\nHall of fame (policy '{policy}' marks >>>>):", table(hof, choose(hof, policy), ho),
             "\nPareto front (size vs pool fitness):", table(front, choose(front, policy), ho)]
    if plot:
        parts.append(f"\nwrote {plot} and {out / 'front.csv'}")
    return "\n".join(parts)
