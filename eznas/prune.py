"""Pruning: the smaller programs a program shrinks to, one subtree at a time, each with its pool fitness.

`eznas.simplify` rewrites a program into an equal formula; pruning changes what it computes. Each
step replaces one subtree by one of its own subtrees of the same type (a hoist: ``a * (b + c)``
becomes ``a * b``, ``b + c`` or ``a``), and keeps, of all such replacements, the one with the highest
pool fitness (ties: the smaller). The path runs from the program down to one node, so it holds a
program at most sizes on the way, each scored as evolution scores (same pool, same aggregate, tied
scores counted against it). `pick` takes the smallest program within a tolerance of the starting
fitness. Only the run's pools are read: a pick never sees a validation or held-out network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from deap import gp

from eznas import gp as programs
from eznas.fitness import WORST, Evaluator, Fitness, evaluate
from eznas.statsbatch import StatsBatch


@dataclass(frozen=True)
class Step:
    """One program of a pruning path: its prefix string, size and pool fitness (with the tau per task)."""

    expr: str
    size: int
    fitness: float
    taus: dict[str, float]

    def row(self) -> dict[str, Any]:
        """This step as a row of `eznas.tables.runs.table`."""
        tree = programs.parse(self.expr)
        return {"expr": self.expr, "size": self.size, "depth": tree.height, "fitness": self.fitness,
                "taus": self.taus, "infix": programs.infix(tree)}


def hoists(tree: gp.PrimitiveTree) -> Iterator[gp.PrimitiveTree]:
    """Every distinct tree made from ``tree`` by putting one proper subtree of a node in that node's place
    (same type, so each is well typed and smaller)."""
    seen: set[str] = set()
    for i, node in enumerate(tree):
        outer = tree.searchSubtree(i)
        for j in range(i + 1, outer.stop):
            if tree[j].ret is not node.ret:
                continue
            inner = tree.searchSubtree(j)
            smaller = gp.PrimitiveTree(tree[:i] + tree[inner] + tree[outer.stop:])
            key = str(smaller)
            if key not in seen:
                seen.add(key)
                yield smaller


def prune_path(tree: gp.PrimitiveTree, score: Callable[[gp.PrimitiveTree], Fitness]) -> list[Step]:
    """The greedy pruning path from ``tree`` (first) down to a one-node program: at each step the hoist
    (`hoists`) with the highest ``score`` (ties: fewer nodes, then the first found). Hoists whose
    fitness is invalid (a task scored `WORST`) are never taken; the path stops early if all are."""
    def step_of(t: gp.PrimitiveTree) -> tuple[Step, bool]:
        f = score(t)
        return Step(str(t), len(t), f.value, f.taus), f.valid and f.value > WORST

    path = [step_of(tree)[0]]
    while len(tree) > 1:
        best: tuple[float, int, gp.PrimitiveTree, Step] | None = None
        for smaller in hoists(tree):
            step, valid = step_of(smaller)
            if valid and (best is None or (step.fitness, -step.size) > best[:2]):
                best = (step.fitness, -step.size, smaller, step)
        if best is None:
            break
        tree = best[2]
        path.append(best[3])
    return path


def pool_path(expr: str, batch: StatsBatch, aggregate: str, relative_to: Sequence[str] = ()) -> list[Step]:
    """`prune_path` of program ``expr`` scored on ``batch`` as evolution scores it (``aggregate`` and
    ``relative_to``: the run's ``tasks.aggregate`` and ``tasks.relative_to``; subtree values memoised across
    the whole path)."""
    evaluator = Evaluator(batch)
    return prune_path(programs.parse(expr), lambda t: evaluate(evaluator, t, aggregate, relative_to=relative_to))


def pick(path: Sequence[Step], tolerance: float) -> Step:
    """The smallest program of ``path`` whose fitness is at least the first program's minus ``tolerance``
    (ties in size: the higher fitness)."""
    floor = path[0].fitness - tolerance
    return min((s for s in path if s.fitness >= floor), key=lambda s: (s.size, -s.fitness))


# ----------------------------------------------------------------------------- eznas prune

def pruned_record(record: dict[str, Any], start: Step, chosen: Step, tolerance: float) -> dict[str, Any]:
    """``record`` (of the program pruned) rewritten for the ``chosen`` program, naming the ``start`` of its path."""
    origin = {"expression": start.expr, "size": start.size, "pool_fitness": start.fitness, "tolerance": tolerance}
    return {**record, "expression": chosen.expr, "infix": chosen.row()["infix"], "size": chosen.size,
            "pool_fitness": chosen.fitness, "pool_taus": chosen.taus, "pruned_from": origin}
