"""Fitness: a program x a batch of networks -> scores -> Kendall tau-b per task -> one number.

Direction: greater is better; `WORST` (-1.0, the lowest possible tau) is given to any program
whose scores on a task are non-finite or constant, or that raises: the run carries on.
Selection uses tau-b with tied scores counted against the program (`kendall_taus` with
``penalise_ties``): float32 saturation (a sigmoid of a large number, a clamp) ties whole
groups of networks, which plain tau-b would reward by shrinking its denominator.

A program is evaluated on all layers of all networks at once, and every distinct subtree's
value is memoised (populations share most subtrees). An `Evaluator` lives as long as its batch:
the evolution keeps one on the whole pool for the run, so a subtree is computed once per run,
and selection reads each generation's sample out of the pool's scores.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from deap import gp

import primitives
from eznas import gp as programs
from eznas.jobs import current_device
from eznas.statsbatch import StatsBatch
from eznas.tasks import family

WORST = -1.0
SOFTMIN_TEMPERATURE = 0.05  # of the space_softmin aggregate: a family 0.1 below the others weighs e^2 more
TAU_BLOCK = 1 << 24  # pair comparisons held in memory at once by `kendall_taus`


class Memo:
    """Least-recently-used values by subtree key, up to ``budget`` bytes; safe to share between threads."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._values: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: str) -> torch.Tensor | None:
        """The value of ``key``, marked as just used; None if not held."""
        with self._lock:
            hit = self._values.get(key)
            if hit is not None:
                self._values.move_to_end(key)
            return hit

    def put(self, key: str, value: torch.Tensor) -> None:
        """Hold ``value`` under ``key``, dropping the least recently used values beyond the budget."""
        size = _nbytes(value)
        if size > self.budget:
            return
        with self._lock:
            old = self._values.pop(key, None)
            self._bytes += size - (0 if old is None else _nbytes(old))
            self._values[key] = value
            while self._bytes > self.budget:
                _, dropped = self._values.popitem(last=False)
                self._bytes -= _nbytes(dropped)


def _nbytes(value: torch.Tensor) -> int:
    return value.numel() * value.element_size()


class Evaluator:
    """Evaluates programs on one `StatsBatch`, memoising subtree values.

    Terminals are not held (the batch holds them). Numbers per layer or per network (1-D values:
    every program's reductions and results) are held apart from matrices, up to
    ``numbers_bytes``, so that the matrices one generation computes do not push out the numbers
    that the next generation reuses; matrices are held up to ``memo_bytes``. One evaluator may
    serve several threads. Programs run on the device of the batch's tensors (``device``: moved
    there first); `safe_scores` comes back on the CPU.
    """

    def __init__(self, batch: StatsBatch, memo_bytes: int = 1 << 30, numbers_bytes: int = 1 << 28,
                 device: str | None = None):
        self.batch = batch if device is None else batch.to(device)
        self.context = batch.context()
        self._numbers, self._matrices = Memo(numbers_bytes), Memo(memo_bytes)
        self._n_layers = len(batch.seg)

    @classmethod
    def on_job_device(cls, batch: StatsBatch) -> Evaluator:
        """An evaluator of ``batch`` on the running job's device (`eznas.jobs.current_device`: a GPU of
        the worker that holds one, else the CPU), as fitness jobs build it on their worker."""
        return cls(batch, device=current_device())

    def scores(self, tree: gp.PrimitiveTree) -> torch.Tensor:
        """Per-network scores [B] of ``tree`` (may contain non-finite values)."""
        with torch.no_grad():
            return programs.fold(tree, self._apply, self._recall)

    def safe_scores(self, tree: gp.PrimitiveTree) -> np.ndarray:
        """float64 scores [B] of ``tree``; NaN everywhere if a primitive fails (a bad program, not a crash)."""
        try:
            return self.scores(tree).double().cpu().numpy()
        except (RuntimeError, ValueError, IndexError):
            return np.full(self.batch.n_nets, np.nan)

    def _recall(self, key: str) -> torch.Tensor | None:
        hit = self._numbers.get(key)
        return hit if hit is not None else self._matrices.get(key)

    def _apply(self, node: programs.Node, args: list[torch.Tensor], key: str) -> torch.Tensor:
        if isinstance(node, gp.Terminal):  # the batch's own tensors (or a constant): nothing to hold
            return self._terminal(node.name)
        prim = primitives.by_name(node.name)
        value = prim.func(*args, self.context) if prim.aggregator else prim.func(*args)
        (self._numbers if value.dim() == 1 else self._matrices).put(key, value)
        return value

    def _terminal(self, name: str) -> torch.Tensor:
        if name in programs.CONSTANTS:
            typ, v = programs.CONSTANTS[name]
            n = self._n_layers if typ is primitives.LScalar else self.batch.n_nets
            return torch.full((n,), v, dtype=torch.float32, device=self.batch.seg.device)
        if name in self.batch.layers:
            return self.batch.layers[name]
        return self.batch.net[name]


def kendall_taus(scores: np.ndarray, accuracy: np.ndarray, penalise_ties: bool = False) -> np.ndarray:
    """Kendall tau-b of each row of ``scores`` [P, n] vs ``accuracy`` [n]; `WORST` for a row
    that is non-finite or constant (or when n < 2 or the accuracies are all equal).

    Bit for bit the value of ``scipy.stats.kendalltau(row, accuracy).statistic``: the same pair
    counts (discordant pairs, ties in scores, in accuracy and in both, here by comparing every
    pair of all rows at once) enter the same floating-point expression. With ``penalise_ties``,
    tau-b times sqrt(1 - tied score pairs / all pairs): equal to tau-b when no two scores tie,
    and the same as counting tied score pairs as untied-but-uninformative (Kendall's
    (C - D) / sqrt(P (P - accuracy ties)) with P pairs).
    """
    scores = np.asarray(scores, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    n_rows, n = scores.shape
    out = np.full(n_rows, WORST)
    if n < 2 or not np.isfinite(accuracy).all():
        return out
    total = n * (n - 1) // 2
    acc_sign = np.sign(accuracy[:, None] - accuracy[None, :]).astype(np.int8)
    acc_ties = (int((acc_sign == 0).sum()) - n) // 2
    usable = np.flatnonzero(np.isfinite(scores).all(axis=1) & (scores != scores[:, :1]).any(axis=1))
    if acc_ties == total:
        return out
    step = max(1, TAU_BLOCK // (n * n))
    for start in range(0, len(usable), step):
        rows = usable[start:start + step]
        s = scores[rows]
        sign = (s[:, :, None] > s[:, None, :]).astype(np.int8) - (s[:, :, None] < s[:, None, :]).astype(np.int8)
        tied = sign == 0
        discordant = ((sign * acc_sign) < 0).sum(axis=(1, 2)) // 2
        score_ties = (tied.sum(axis=(1, 2)) - n) // 2
        both_ties = ((tied & (acc_sign == 0)).sum(axis=(1, 2)) - n) // 2
        for row, dis, xtie, ntie in zip(rows.tolist(), discordant.tolist(), score_ties.tolist(), both_ties.tolist()):
            out[row] = _tau_b(total, int(dis), int(xtie), acc_ties, int(ntie), penalise_ties)
    return out


def _tau_b(total: int, dis: int, xtie: int, ytie: int, ntie: int, penalise_ties: bool) -> float:
    """Tau-b from pair counts, in scipy's floating-point expression; `WORST` if not finite."""
    con_minus_dis = total - xtie - ytie + ntie - 2 * dis
    tau = float(np.minimum(1.0, max(-1.0, con_minus_dis / np.sqrt(total - xtie) / np.sqrt(total - ytie))))
    if not math.isfinite(tau):
        return WORST
    if penalise_ties:
        tau *= math.sqrt(1.0 - float(xtie) / (total + 0.0))
    return tau


@dataclass(frozen=True)
class Fitness:
    """Fitness of one program on one batch: aggregate value and tau per task."""

    value: float
    taus: dict[str, float]
    valid: bool


def fitness_of(scores: np.ndarray, accuracy: np.ndarray, task: np.ndarray, aggregate: str = "mean",
               penalise_ties: bool = True, reference: np.ndarray | None = None) -> list[Fitness]:
    """Fitness of each row of ``scores`` [P, B] on networks of ``accuracy`` and ``task`` [B]:
    tau per task (tied scores counted against the program unless ``penalise_ties`` is False:
    plain tau-b), reduced with ``aggregate``.

    ``reference`` [R, B]: scores of reference proxies (`eznas.config.TasksConfig.relative_to`); the
    aggregate then reduces each task's margin, its tau minus the best plain tau-b of a reference on
    the task's networks. ``Fitness.taus`` stay the program's own taus.
    """
    names = list(dict.fromkeys(task.tolist()))
    per_task = {t: kendall_taus(scores[:, task == t], accuracy[task == t], penalise_ties) for t in names}
    bar = {t: 0.0 for t in names}
    if reference is not None and len(reference):
        bar = {t: float(kendall_taus(reference[:, task == t], accuracy[task == t]).max()) for t in names}
    fits = []
    for p in range(len(scores)):
        taus = {t: float(per_task[t][p]) for t in names}
        value = aggregate_taus({t: tau - bar[t] for t, tau in taus.items()}, aggregate)
        fits.append(Fitness(value=value, taus=taus, valid=all(t != WORST for t in taus.values())))
    return fits


def reference_scores(batch: StatsBatch, names: Sequence[str]) -> np.ndarray | None:
    """[R, B] the batch's values of the per-network statistics ``names`` (``tasks.relative_to``), the
    ``reference`` of `fitness_of`; None when ``names`` is empty."""
    return np.stack([batch.net[name].double().cpu().numpy() for name in names]) if names else None


def evaluate(evaluator: Evaluator, tree: gp.PrimitiveTree, aggregate: str = "mean",
             penalise_ties: bool = True, relative_to: Sequence[str] = ()) -> Fitness:
    """Score ``tree`` on the evaluator's batch and reduce per-task taus with ``aggregate``
    (tied scores counted against the program unless ``penalise_ties`` is False: plain tau-b), as margins
    over the statistics ``relative_to`` when it names any (`fitness_of`)."""
    batch = evaluator.batch
    return fitness_of(evaluator.safe_scores(tree)[None, :], batch.accuracy, batch.task, aggregate, penalise_ties,
                      reference_scores(batch, relative_to))[0]


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
