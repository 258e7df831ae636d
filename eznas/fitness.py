"""Fitness: a program x a batch of networks -> scores -> Kendall tau-b per task -> one number.

Direction: greater is better; `WORST` (-1.0, the lowest possible tau) is given to any program
whose scores on a task are non-finite or constant, or that raises: the run carries on.
Selection uses tau-b with tied scores counted against the program (`kendall_tau` with
``penalise_ties``): float32 saturation (a sigmoid of a large number, a clamp) ties whole
groups of networks, which plain tau-b would reward by shrinking its denominator.
A program is evaluated on all layers of all networks at once, and every distinct subtree's
value is memoised (populations share most subtrees).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from deap import gp
from scipy import stats as sps

import primitives
from eznas import gp as programs
from eznas.statsbatch import StatsBatch
from eznas.tasks import family

WORST = -1.0
SOFTMIN_TEMPERATURE = 0.05  # of the space_softmin aggregate: a family 0.1 below the others weighs e^2 more


class Evaluator:
    """Evaluates programs on one `StatsBatch`, memoising subtree values up to ``memo_bytes``."""

    def __init__(self, batch: StatsBatch, memo_bytes: int = 1 << 30):
        self.batch = batch
        self.context = batch.context()
        self.memo_bytes = memo_bytes
        self._memo: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._n_layers = len(batch.seg)

    def scores(self, tree: gp.PrimitiveTree) -> torch.Tensor:
        """Per-network scores [B] of ``tree`` (may contain non-finite values)."""
        with torch.no_grad():
            return programs.fold(tree, self._apply, self._recall)

    def _recall(self, key: str) -> torch.Tensor | None:
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
        return hit

    def _apply(self, node: programs.Node, args: list[torch.Tensor], key: str) -> torch.Tensor:
        if isinstance(node, gp.Terminal):
            value = self._terminal(node.name)
        else:
            prim = primitives.by_name(node.name)
            value = prim.func(*args, self.context) if prim.aggregator else prim.func(*args)
        self._remember(key, value)
        return value

    def _terminal(self, name: str) -> torch.Tensor:
        if name in programs.CONSTANTS:
            typ, v = programs.CONSTANTS[name]
            n = self._n_layers if typ is primitives.LScalar else self.batch.n_nets
            return torch.full((n,), v, dtype=torch.float32)
        if name in self.batch.layers:
            return self.batch.layers[name]
        return self.batch.net[name]

    def _remember(self, key: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.memo_bytes:
            return
        self._memo[key] = value
        self._bytes += size
        while self._bytes > self.memo_bytes:
            _, old = self._memo.popitem(last=False)
            self._bytes -= old.numel() * old.element_size()


def kendall_tau(scores: np.ndarray, accuracy: np.ndarray, penalise_ties: bool = False) -> float:
    """Kendall tau-b of scores vs accuracy; `WORST` when scores are non-finite or constant.

    With ``penalise_ties``, tau-b times sqrt(1 - tied score pairs / all pairs): equal to tau-b
    when no two scores tie, and the same as counting tied score pairs as untied-but-uninformative
    (Kendall's (C - D) / sqrt(P (P - accuracy ties)) with P pairs).
    """
    if len(scores) < 2 or not np.all(np.isfinite(scores)) or np.all(scores == scores[0]):
        return WORST
    tau = sps.kendalltau(scores, accuracy).statistic
    if not math.isfinite(tau):
        return WORST
    if penalise_ties:
        counts = np.unique(scores, return_counts=True)[1].astype(float)
        pairs = len(scores) * (len(scores) - 1) / 2
        tau *= math.sqrt(1.0 - float((counts * (counts - 1) / 2).sum()) / pairs)
    return float(tau)


@dataclass(frozen=True)
class Fitness:
    """Fitness of one program on one batch: aggregate value and tau per task."""

    value: float
    taus: dict[str, float]
    valid: bool


def evaluate(evaluator: Evaluator, tree: gp.PrimitiveTree, aggregate: str = "mean",
             penalise_ties: bool = True) -> Fitness:
    """Score ``tree`` on the evaluator's batch and reduce per-task taus with ``aggregate``
    (tied scores counted against the program unless ``penalise_ties`` is False: plain tau-b)."""
    batch = evaluator.batch
    try:
        scores = evaluator.scores(tree).double().numpy()
    except (RuntimeError, ValueError, IndexError):  # a primitive failing is a bad program, not a crash
        scores = np.full(batch.n_nets, np.nan)
    taus = {}
    for task in dict.fromkeys(batch.task.tolist()):
        mask = batch.task == task
        taus[task] = kendall_tau(scores[mask], batch.accuracy[mask], penalise_ties)
    return Fitness(value=aggregate_taus(taus, aggregate), taus=taus, valid=all(t != WORST for t in taus.values()))


def aggregate_taus(taus: dict[str, float], aggregate: str) -> float:
    """One fitness from per-task taus.

    ``"mean"`` or ``"min"`` over tasks; over search-space families (`eznas.tasks.family`: the
    mean tau of each family's tasks, so a family counts the same however many of its tasks are
    evolved on): ``"space_mean"`` their mean, ``"space_min"`` their minimum, ``"space_softmin"``
    the soft minimum ``-T log mean exp(-tau / T)`` with T = `SOFTMIN_TEMPERATURE`, which rewards
    the worst family most while every family still counts.
    """
    if aggregate == "min":
        return float(min(taus.values()))
    if aggregate == "mean":
        return float(np.mean(list(taus.values())))
    families: dict[str, list[float]] = {}
    for task, tau in taus.items():
        families.setdefault(family(task), []).append(tau)
    means = np.array([np.mean(v) for v in families.values()])
    if aggregate == "space_min":
        return float(means.min())
    if aggregate == "space_softmin":
        low = means.min()  # shifted for a stable log-sum-exp
        return float(low - SOFTMIN_TEMPERATURE * math.log(np.mean(np.exp(-(means - low) / SOFTMIN_TEMPERATURE))))
    return float(means.mean())
