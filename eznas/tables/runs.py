"""Tables of a run: the hall of fame and Pareto front as ``eznas inspect`` prints them, and ``front.csv``."""

from __future__ import annotations

import csv
import io
from typing import Any


def table(rows: list[dict[str, Any]], chosen: int, columns: dict[str, dict[str, float]]) -> str:
    """Fixed-width table: rank, size, depth, pool fitness, tau per task, one column per entry of
    ``columns`` holding a value (name -> program -> value, e.g. mean held-out tau), expression."""
    if not rows:
        return "(no programs scored yet)"
    tasks = list(rows[0]["taus"])
    shown = {name: values for name, values in columns.items() if values}
    head = f"{'':4} {'rank':>4} {'size':>4} {'depth':>5} {'fitness':>8} " + " ".join(f"{_short(t):>10}" for t in tasks)
    head += "".join(f" {name:>8}" for name in shown) + "  expression"
    lines = [head]
    for i, r in enumerate(rows):
        cells = " ".join(f"{r['taus'][t]:>10.4f}" for t in tasks)
        extra = "".join(f" {values[r['expr']]:>8.4f}" if r["expr"] in values else " " * 9 for values in shown.values())
        mark = ">>>>" if i == chosen else ""
        lines.append(f"{mark:4} {i:>4} {r['size']:>4} {r['depth']:>5} {r['fitness']:>8.4f} {cells}{extra}  {r['infix']}")
    return "\n".join(lines)


def versus_table(taus: dict[str, dict[str, float]], counts: dict[str, int]) -> str:
    """Fixed-width table of task -> column -> tau (``counts``: networks per task), with the mean over tasks."""
    columns = list(next(iter(taus.values()))) if taus else []
    width = max([len(t) for t in taus] + [4])
    lines = [f"{'task':<{width}} {'nets':>5} " + " ".join(f"{c:>8}" for c in columns)]
    lines += [f"{t:<{width}} {counts[t]:>5} " + " ".join(f"{row[c]:>8.4f}" for c in columns) for t, row in taus.items()]
    if len(taus) > 1:
        means = [sum(row[c] for row in taus.values()) / len(taus) for c in columns]
        lines.append(f"{'mean':<{width}} {sum(counts.values()):>5} " + " ".join(f"{m:>8.4f}" for m in means))
    return "\n".join(lines)


def _short(task: str) -> str:
    return task.split(":", 1)[1][:10]


def front_csv(front: list[dict[str, Any]], unseen: dict[str, dict[str, float]], kinds: dict[str, str]) -> str:
    """``front.csv``: one row per Pareto-front program, its pool taus and its taus on unseen networks
    (``unseen``: program -> task -> tau; ``kinds``: task -> column prefix, ``heldout`` or ``validate``)."""
    tasks = list(front[0]["taus"]) if front else []
    others = [t for t in kinds if any(t in u for u in unseen.values())]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["size", "depth", "fitness", *tasks, *(f"{kinds[t]}:{t}" for t in others), "infix", "expr"])
    for r in front:
        u = unseen.get(r["expr"], {})
        w.writerow([r["size"], r["depth"], f"{r['fitness']:.6f}", *(f"{r['taus'][t]:.6f}" for t in tasks),
                    *(f"{u[t]:.6f}" if t in u else "" for t in others), r["infix"], r["expr"]])
    return buf.getvalue()
