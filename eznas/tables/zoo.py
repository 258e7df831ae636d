"""The model-zoo report: Kendall tau-b of every proxy against published ImageNet top-1, over the
zoo and within each family, and the cost of one proxy relative to one forward+backward
(`eznas.zoo.score_zoo` measures them)."""

from __future__ import annotations

import numpy as np

from eznas.evaluate import Evaluation
from eznas.tables import format_number
from eznas.zoo import ZooRun, families


def _subset(e: Evaluation, mask: np.ndarray) -> Evaluation:
    return Evaluation(e.proxy, e.task, e.seed, e.batch_size, e.index[mask], e.accuracy[mask], e.scores[mask],
                      e.seconds[mask], e.errors)


def zoo_report(run: ZooRun, cost_proxy: str, setup: str) -> str:
    """Markdown: Kendall tau-b of every proxy over the zoo and within each family (columns),
    then per model its accuracy, size and the cost of ``cost_proxy`` relative to one
    forward+backward. ``setup`` is the paragraph saying how the numbers were made."""
    fams = families(run.models)
    masks = {f: np.array([m.family == f for m in run.models]) for f in fams}
    head = ["proxy", f"all {len(run.models)}"] + [f"{f} ({int(masks[f].sum())})" for f in fams] + ["failed"]
    rows = sorted(run.evaluations, key=lambda e: -np.nan_to_num(e.kendall_tau, nan=-2.0))
    lines = [setup, "", "## Kendall tau-b against the published ImageNet top-1", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for e in rows:
        cells = [f"`{e.proxy}`", format_number(e.kendall_tau, 3)]
        cells += [format_number(_subset(e, masks[f]).kendall_tau, 3) for f in fams]
        lines.append("| " + " | ".join(cells + [str(e.failed)]) + " |")
    mean_within = {e.proxy: _mean_known([_subset(e, masks[f]).kendall_tau for f in fams]) for e in rows}
    lines += ["", "Each tau is over the models with a finite score (`failed` counts the others; a family column "
              "shows – when fewer than two of its models have one).", "", "Mean within-family tau: " + ", ".join(
        f"`{p}` {format_number(v, 3)}" for p, v in sorted(mean_within.items(), key=lambda kv: -np.nan_to_num(kv[1], nan=-2.0))) + "."]
    cost = next(e for e in run.evaluations if e.proxy == cost_proxy)
    ratio = cost.seconds / run.fwd_bwd
    lines += ["", f"## Cost of `{cost_proxy}`", "",
              f"Median over the zoo of (one `{cost_proxy}` call) / (one forward+backward): "
              f"**{format_number(float(np.nanmedian(ratio)), 2)}x** (range {format_number(float(np.nanmin(ratio)), 2)}"
              f"-{format_number(float(np.nanmax(ratio)), 2)}x).", "",
              "| model | family | published tag | top-1 | params (M) | MMACs | fwd+bwd s | proxy s | ratio |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for i, m in enumerate(run.models):
        lines.append(f"| `{m.name}` | {m.family} | {m.tag} | {m.top1:.3f} | {run.params[i] / 1e6:.2f} | "
                     f"{run.macs[i] / 1e6:.1f} | {run.fwd_bwd[i]:.3f} | {format_number(float(cost.seconds[i]), 3)} | "
                     f"{format_number(float(ratio[i]), 2)} |")
    failures = [f"- `{e.proxy}`: " + "; ".join(e.errors) for e in run.evaluations if e.errors]
    if failures:
        lines += ["", "## Failures", "", *failures]
    return "\n".join(lines) + "\n"


def _mean_known(values: list[float]) -> float:
    """The mean of the finite ``values``; NaN when there is none."""
    known = [v for v in values if np.isfinite(v)]
    return float(np.mean(known)) if known else float("nan")
