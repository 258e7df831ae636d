"""Tables of a run: the hall of fame and Pareto front as ``eznas inspect`` prints them, and ``front.csv``."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np


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


def front_csv(front: list[dict[str, Any]], heldout: dict[str, dict[str, float]]) -> str:
    """``front.csv``: one row per Pareto-front program, its taus and held-out taus to 6 decimals."""
    tasks = list(front[0]["taus"]) if front else []
    htasks = sorted({t for h in heldout.values() for t in h})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["size", "depth", "fitness", *tasks, *(f"heldout:{t}" for t in htasks), "infix", "expr"])
    for r in front:
        h = heldout.get(r["expr"], {})
        w.writerow([r["size"], r["depth"], f"{r['fitness']:.6f}", *(f"{r['taus'][t]:.6f}" for t in tasks),
                    *(f"{h[t]:.6f}" if t in h else "" for t in htasks), r["infix"], r["expr"]])
    return buf.getvalue()
