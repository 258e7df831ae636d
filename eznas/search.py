"""Zero-shot NAS with any proxy: random search or regularized evolution on a benchmark's space.

A PROXY is anything `eznas evaluate` accepts (a baseline name, a ``.py`` file defining
``score(net, inputs, targets)``, a GP expression). Architectures are scored through
`eznas.evaluate.score_records`, i.e. on the evaluation protocol: each network built with net
seed 0 and scored on the shared batch of 64 real images drawn with **batch seed 0**, whatever
the search seed. The per-network scores therefore go to (and come from) the same score cache
as ``eznas evaluate --seed 0``, and are shared across search seeds and strategies; the search
seed only drives the strategy's random choices. Results do not depend on the parallel settings
(backend, workers, retries, timeout: they only say where a batch of networks is scored).

Strategies (``budget`` = number of distinct architectures scored):

- ``random``: ``benchmarks.sample(task, budget, seed)`` (distinct architectures, any task).
- ``rea``: regularized evolution (Real et al., AAAI 2019) with the proxy as fitness, NB201
  only: a population of 64 drawn at random (distinct), then cycles of: sample 16 members
  (without replacement), mutate the best of them by giving one of the 6 cell edges a different
  op (one of the other 4), add the child, remove the oldest member. A child that was scored
  before keeps its score and costs nothing; the search stops when ``budget`` distinct
  architectures have been scored. One child per cycle, scored before the next cycle (the
  sequential algorithm).

Either way the selected architecture is the best-scored one ever seen (ties: lowest benchmark
index; networks on which the proxy failed are never selected). A set-level baseline
(``az_nas``) is rank-aggregated over every architecture scored so far, so its scores are
recomputed whenever one is added.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from eznas import benchmarks, proxies
from eznas.errors import EznasError
from eznas.evaluate import BATCH_SIZE, NET_SEED, Evaluation, median_known, protocol_spec, score_records
from eznas.parallel import Parallel
from eznas.proxy_spec import ProxySpec
from eznas.spaces.nb201 import OPS, parse_arch
from eznas.tasks import parse_task

STRATEGIES = ("random", "rea")
BATCH_SEED = 0  # the evaluation protocol's batch seed (shared with `eznas evaluate --seed 0`)
POPULATION = 64  # REA population size
TOURNAMENT = 16  # REA tournament sample size
CHUNK = 32  # networks per scoring call (the progress bar advances per call); does not change results
MAX_STALE_CYCLES = 20_000  # REA stops if this many cycles in a row find no unscored architecture


@dataclass(frozen=True)
class SearchResult:
    """One search.

    Attributes
    ----------
    task, proxy (display label), proxy_arg (as given), strategy, budget, seed, jobs (workers) : the settings.
    population, tournament : REA settings (None for random search).
    index, arch, score, accuracy : the selected architecture, its proxy score and its test accuracy (%).
    best_accuracy : the best test accuracy in the task's space.
    percentile : percentage of the space's architectures whose accuracy is at most the selected one's.
    n_scored : distinct architectures scored; cycles : REA cycles run (0 for random search).
    wall_seconds : wall time of the search (small when the scores were cached).
    score_seconds : what scoring the ``n_scored`` architectures costs from scratch on one worker:
        ``n_scored`` times the median of their per-network scoring times in the score cache (NaN if
        none is known), the same whether this search computed them or found them cached; the
        median, not the sum, so that a few inflated timings (a worker paused or starved
        mid-network) do not dominate it.
    scored : (index, score) of every distinct architecture in the order scored (NaN: the proxy failed;
        for a set-level baseline, its final rank-aggregated score).
    """

    task: str
    proxy: str
    proxy_arg: str
    strategy: str
    budget: int
    seed: int
    jobs: int
    population: int | None
    tournament: int | None
    index: int
    arch: Any
    score: float
    accuracy: float
    best_accuracy: float
    percentile: float
    n_scored: int
    cycles: int
    wall_seconds: float
    score_seconds: float
    scored: tuple[tuple[int, float], ...] = field(repr=False)

    def line(self) -> str:
        """The one-line summary the command prints."""
        arch = self.arch if isinstance(self.arch, str) else "(NDS net)"
        cost = f"{self.score_seconds:.0f} s" if math.isfinite(self.score_seconds) else "unknown"
        return (f"{self.task} {self.strategy} {self.proxy} (budget {self.budget}, seed {self.seed}): "
                f"#{self.index} {arch} score {self.score:.6g}, test accuracy {self.accuracy:.2f}% "
                f"(best in space {self.best_accuracy:.2f}%, percentile {self.percentile:.2f}); "
                f"{self.n_scored} architectures scored in {self.wall_seconds:.1f} s "
                f"(proxy time {cost}, cached or not)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: settings, selection, protocol, counts, times, scored (NaN as null)."""
        d = asdict(self)
        d["score_seconds"] = self.score_seconds if math.isfinite(self.score_seconds) else None
        d["scored"] = [[i, s if math.isfinite(s) else None] for i, s in self.scored]
        d["protocol"] = {"net_seed": NET_SEED, "batch_seed": BATCH_SEED, "batch_size": BATCH_SIZE}
        return d


# ----------------------------------------------------------------------------- NB201 moves

def edges(arch: str) -> list[str]:
    """The 6 ops of an NB201 arch string, in string order (node 1: 0; node 2: 0,1; node 3: 0,1,2)."""
    return [op for node in parse_arch(arch) for op, _ in node]


def arch_from_edges(ops: Sequence[str]) -> str:
    """The NB201 arch string of 6 edge ops (inverse of `edges`)."""
    it = iter(ops)
    return "+".join("|" + "|".join(f"{next(it)}~{src}" for src in range(node)) + "|" for node in (1, 2, 3))


def mutate(arch: str, rng: np.random.Generator) -> str:
    """Change one of the 6 cell edges of an NB201 arch to a different op (uniform edge, uniform new op)."""
    ops = edges(arch)
    edge = int(rng.integers(len(ops)))
    choices = [op for op in OPS if op != ops[edge]]
    ops[edge] = choices[int(rng.integers(len(choices)))]
    return arch_from_edges(ops)


# ----------------------------------------------------------------------------- search

class _Scorer:
    """Scores distinct records once, in chunks, through the score cache; keeps the scores of all seen."""

    def __init__(self, spec: ProxySpec, task: str, records: list[dict[str, Any]], parallel: Parallel,
                 data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None,
                 scores_dir: str | os.PathLike | None, bar: tqdm) -> None:
        self.spec, self.task, self.records, self.parallel = spec, task, records, parallel
        self.data_dir, self.cache_dir, self.scores_dir, self.bar = data_dir, cache_dir, scores_dir, bar
        self.set_level = spec.kind == "baseline" and proxies.get(spec.ref).combine is not None
        self.order: list[int] = []  # indices in the order first scored
        self.scores: dict[int, float] = {}
        self.seconds: dict[int, float] = {}  # each network's cached scoring time

    def __call__(self, indices: Sequence[int]) -> None:
        """Score the indices not seen yet (in the order given, repeats dropped)."""
        new = [i for i in dict.fromkeys(indices) if i not in self.scores]
        for start in range(0, len(new), CHUNK):
            part = new[start:start + CHUNK]
            result = self._score(part)
            self.order += part
            self.scores.update(zip(part, map(float, result.scores)))
            self.seconds.update(zip(part, map(float, result.seconds)))
            if self.set_level:  # re-rank everything seen (cached, so only the combination is recomputed)
                self.scores = dict(zip(self.order, map(float, self._score(self.order).scores)))
            self.bar.update(len(part))

    def _score(self, indices: Sequence[int]) -> Evaluation:
        return score_records(self.spec, self.task, [self.records[i] for i in indices], BATCH_SEED, self.parallel,
                             self.data_dir, self.cache_dir, progress=False, scores_dir=self.scores_dir)

    def cost_seconds(self) -> float:
        """Networks seen times the median of their known scoring times (NaN if none is known)."""
        return len(self.seconds) * median_known(list(self.seconds.values()))

    def fitness(self, index: int) -> tuple[float, int]:
        """Sort key: higher score first, then lower index (failures rank last)."""
        s = self.scores[index]
        return (s if math.isfinite(s) else -math.inf, -index)

    def best(self) -> int | None:
        """The best-scored index so far (None if every score failed)."""
        finite = [i for i in self.order if math.isfinite(self.scores[i])]
        return max(finite, key=self.fitness) if finite else None


def _rea(score: _Scorer, budget: int, rng: np.random.Generator, population_size: int, tournament: int) -> int:
    """Regularized evolution until ``budget`` distinct architectures are scored; returns the cycles run."""
    table = {r["arch"]: r["index"] for r in score.records}
    first = rng.choice(len(score.records), size=min(population_size, budget), replace=False)
    population = deque(int(i) for i in first)
    score(list(population))
    cycles = stale = 0
    while len(score.scores) < budget:
        if stale >= MAX_STALE_CYCLES:
            raise EznasError(f"regularized evolution found no unscored architecture in {MAX_STALE_CYCLES} cycles "
                             f"({len(score.scores)} of budget {budget} scored); use a smaller --budget")
        cycles += 1
        members = [population[int(i)] for i in rng.choice(len(population), size=min(tournament, len(population)),
                                                           replace=False)]
        parent = max(members, key=score.fitness)
        child = table[mutate(score.records[parent]["arch"], rng)]
        stale = stale + 1 if child in score.scores else 0
        score([child])
        population.append(child)
        if len(population) > population_size:
            population.popleft()
    return cycles


def search(proxy: str, task: str, strategy: str, budget: int, seed: int, parallel: Parallel = Parallel(),
           data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
           progress: bool = True, population: int = POPULATION, tournament: int = TOURNAMENT,
           scores_dir: str | os.PathLike | None = None) -> SearchResult:
    """Search ``task``'s benchmark space for the architecture ``proxy`` scores highest.

    Parameters
    ----------
    proxy : PROXY argument (baseline name, ``.py`` file, expression); resolved before any work.
    task : task id (``random``: any task; ``rea``: an NB201 task).
    strategy : ``"random"`` or ``"rea"`` (see the module docstring).
    budget : distinct architectures to score (``random``: at most the size of the space).
    seed : seed of the strategy's random choices (not of the scoring batch, which is the protocol's seed 0).
    parallel : where the network jobs run: backend, workers, retries, timeout (does not change the result).
    data_dir, cache_dir : benchmark data and cache root (as `eznas.evaluate.evaluate`).
    progress : show a progress bar over the budget.
    population, tournament : REA population and tournament sizes (64 and 16 in the protocol).
    scores_dir : the per-network score cache (as `eznas.evaluate.evaluate`).

    Raises
    ------
    EznasError : unknown proxy, task or strategy; rea on a non-NB201 task; a budget out of range.
    """
    start = time.perf_counter()
    t = parse_task(task)
    if strategy not in STRATEGIES:
        raise EznasError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if strategy == "rea" and t.space != "nb201":
        raise EznasError(f"strategy rea mutates NB201 cells; {t.name} is not an NB201 task "
                         f"(use --strategy random, or an nb201:<dataset> task)")
    if budget < 1:
        raise EznasError(f"--budget {budget}: score at least 1 architecture")
    parallel.validate()
    if strategy == "rea" and not (population >= 1 and tournament >= 1):
        raise EznasError(f"REA population {population} and tournament {tournament} must be at least 1")
    spec = protocol_spec(proxy, BATCH_SEED)
    records = benchmarks.load_task(t, data_dir)
    if budget > len(records):
        raise EznasError(f"--budget {budget} exceeds the {len(records)} architectures of {t.name}; "
                         f"use at most {len(records)}")
    rng = np.random.default_rng(seed)
    bar = tqdm(total=budget, desc=f"{strategy} {t.name} {spec.label}"[:60], unit="net", disable=not progress,
               dynamic_ncols=True)
    score = _Scorer(spec, t.name, records, parallel, data_dir, cache_dir, scores_dir, bar)
    try:
        if strategy == "random":
            score([r["index"] for r in benchmarks.sample(t, budget, seed, data_dir)])
            cycles = 0
        else:
            cycles = _rea(score, budget, rng, population, tournament)
    finally:
        bar.close()
    best = score.best()
    if best is None:
        raise EznasError(f"proxy {spec.label} failed on all {len(score.order)} scored architectures of {t.name}; "
                         f"check it with 'eznas evaluate {proxy} --task {t.name}'")
    accuracy = np.array([r["accuracy"] for r in records], dtype=float)
    chosen = records[best]
    return SearchResult(
        task=t.name, proxy=spec.label, proxy_arg=proxy, strategy=strategy, budget=budget, seed=seed, jobs=parallel.jobs,
        population=population if strategy == "rea" else None, tournament=tournament if strategy == "rea" else None,
        index=best, arch=chosen["arch"], score=score.scores[best], accuracy=float(chosen["accuracy"]),
        best_accuracy=float(accuracy.max()), percentile=float(100.0 * np.mean(accuracy <= chosen["accuracy"])),
        n_scored=len(score.order), cycles=cycles, wall_seconds=time.perf_counter() - start,
        score_seconds=score.cost_seconds(),
        scored=tuple((i, score.scores[i]) for i in score.order))
