"""Plots: a run's fitness per generation, a proxy's score against accuracy (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from eznas.evaluate import Evaluation
from eznas.files import write_atomic


def plot_fitness(out: Path, history: list[dict[str, Any]], name: str = "fitness.png") -> Path:
    """Write ``out/name``: best and median sample fitness and hall-of-fame pool fitness per generation."""
    plt = _pyplot()
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
    return _save(fig, out / name)


def scatter(e: Evaluation, path: Path) -> None:
    """Score (rank-transformed x axis, as tau sees it) against test accuracy, one point per network."""
    plt = _pyplot()
    mask = np.isfinite(e.scores)
    ranks = np.argsort(np.argsort(e.scores[mask])) / max(1, mask.sum() - 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=120)
    ax.scatter(ranks, e.accuracy[mask], s=4, alpha=0.5)
    ax.set_xlabel(f"{e.proxy} score (rank / n)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{e.task}: tau {e.kendall_tau:.3f}, n={int(mask.sum())}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG (atomically) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return write_atomic(path, buf.getvalue())


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use: it is slow to load)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
