"""The evolution loop, written out as in DEAP's ``algorithms.py``: select, vary, evaluate,
update the hall of fame and Pareto front, log, checkpoint — each a named function.

Every random choice derives from (run seed, generation, position), as in gplearn, so a run's
result does not depend on the number of workers, and resuming from a checkpoint needs no saved
RNG state: generation g after a resume is drawn exactly as it would have been.

Fitness for selection is Kendall tau on networks freshly sampled each generation from every
task's pool; the hall of fame ranks programs by tau on the whole pool (a stable yardstick).
Each program is scored once on the whole pool, on workers that keep the pool and their memo of
subtree values for the run (`pool_scores`); the sample's fitness reads its networks' scores.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from deap import gp

from eznas import gp as programs
from eznas.cache import StatsCache
from eznas.config import Config
from eznas.errors import EznasError
from eznas.fitness import WORST, Evaluator, Fitness, fitness_of, reference_scores
from eznas.parallel import Failed
from eznas.pool import load_pool
from eznas.resident import Resident, run_with
from eznas.run import (CHECKPOINT, CHECKPOINT_VERSION, derive_seed, pool_records, prepare, read_checkpoint,
                       read_record, write_checkpoint, write_config)
from eznas.statsbatch import StatsBatch, concat

RUN_PLACEMENT_KEYS = ("n_jobs", "backend", "address", "retries", "timeout")  # [run] keys that change no result
PHENOTYPE_DIGITS = 12  # per-task taus equal to this many digits: the same phenotype in the hall of fame


@dataclass
class State:
    """Everything a run needs to continue: what the checkpoint holds."""

    next_generation: int
    population: list[str]
    fitness: list[float]
    scored: dict[str, dict[str, Any]] = field(default_factory=dict)  # program -> pool fitness record
    history: list[dict[str, Any]] = field(default_factory=list)
    pools: dict[str, list[int]] = field(default_factory=dict)
    elapsed: float = 0.0

    def to_json(self, config: Config) -> dict[str, Any]:
        """The checkpoint (`eznas.run.CHECKPOINT_KEYS`): this state, its hall of fame and Pareto front."""
        return {"version": CHECKPOINT_VERSION, "config": config.to_dict(), "next_generation": self.next_generation,
                "population": self.population, "fitness": self.fitness, "scored": self.scored,
                "hall_of_fame": hall_of_fame(self.scored, config.evolution.hall_of_fame),
                "pareto_front": pareto_front(self.scored), "history": self.history, "pools": self.pools,
                "elapsed": self.elapsed}


# ----------------------------------------------------------------------------- variation

def seed_programs(config: Config) -> list[gp.PrimitiveTree]:
    """The programs of ``evolution.seed_from``, in order, without repeats: each entry is a run
    directory (its hall of fame) or the ``.json`` record that ``eznas export`` writes beside a
    proxy (its expression).

    A seed program must fit the run's size and depth limits and read only the statistics the run
    allows (``evolution.statistics``): else an error names the limit to raise or the statistics to
    allow, rather than a program that variation could never reproduce.
    """
    e, trees, seen = config.evolution, [], set()
    for source in e.seed_from:
        for text in _seed_texts(Path(source)):
            tree = programs.parse(text)
            if str(tree) in seen:
                continue
            if not _within_limits(tree, config):
                raise EznasError(f"evolution.seed_from: {source} holds a program of size {len(tree)} and depth "
                                 f"{tree.height}, over max_size = {e.max_size} / max_depth = {e.max_depth}; raise them")
            barred = programs.statistics_of(tree) - set(e.statistics)
            if barred:
                raise EznasError(f"evolution.seed_from: {source} holds a program reading {', '.join(sorted(barred))}, "
                                 "which evolution.statistics leaves out; allow them or leave the program out")
            seen.add(str(tree))
            trees.append(tree)
    return trees[:e.population]


def _seed_texts(source: Path) -> list[str]:
    """Expressions of one ``seed_from`` entry: a run's hall of fame, or an exported proxy's record."""
    if source.is_dir():
        return [row["expr"] for row in read_checkpoint(source)["hall_of_fame"]]
    return [read_record(source, "evolution.seed_from")["expression"]]


def init_population(config: Config, seeds: Sequence[gp.PrimitiveTree] = ()) -> list[gp.PrimitiveTree]:
    """``seeds`` first, then ramped half-and-half trees (depths init_min_depth to
    init_max_depth, full and grow alike) until the population is full."""
    e, pset = config.evolution, programs.primitive_set(config.evolution.statistics)
    depths = list(range(e.init_min_depth, e.init_max_depth + 1))
    pop, seen, attempt = list(seeds), {str(t) for t in seeds}, 0
    while len(pop) < e.population:
        rng = random.Random(derive_seed(config.run.seed, "init", attempt))
        depth = depths[attempt % len(depths)]
        method = "full" if (attempt // len(depths)) % 2 else "grow"
        tree = programs.generate(programs.ROOT_TYPE, min(e.init_min_depth, depth), depth, method, rng, pset)
        attempt += 1
        if str(tree) not in seen and _within_limits(tree, config) or attempt > 50 * e.population:
            seen.add(str(tree))
            pop.append(tree)
    return pop


def select(population: list[gp.PrimitiveTree], fitness: list[float], n: int, k: int, rng: random.Random,
           parsimony: float = 0.0) -> list[gp.PrimitiveTree]:
    """Tournament selection: n winners of tournaments of k on ``fitness - parsimony * size``
    (ties go to the smaller tree)."""
    winners = []
    for _ in range(n):
        aspirants = [rng.randrange(len(population)) for _ in range(k)]
        best = max(aspirants, key=lambda i: (fitness[i] - parsimony * len(population[i]), -len(population[i])))
        winners.append(population[best])
    return winners


def vary(parents: list[gp.PrimitiveTree], config: Config, generation: int) -> list[gp.PrimitiveTree]:
    """Crossover on pairs, then one of subtree / node-replacement / shrink mutation, each
    seeded by (seed, generation, pair); a child over the depth or size limit is its parent."""
    e, pset = config.evolution, programs.primitive_set(config.evolution.statistics)
    children = []
    for i in range(0, len(parents), 2):
        pair = [copy.deepcopy(p) for p in parents[i:i + 2]]
        random.seed(derive_seed(config.run.seed, generation, "vary", i))  # DEAP's mutations draw from it
        rng = random.Random(derive_seed(config.run.seed, generation, "mutate", i))
        if len(pair) == 2 and random.random() < e.crossover_prob:
            cx_rng = random.Random(derive_seed(config.run.seed, generation, "crossover", i))
            a, b = crossover_one_point(copy.deepcopy(pair[0]), copy.deepcopy(pair[1]), cx_rng)
            pair = [c if _within_limits(c, config) else p for c, p in zip((a, b), pair)]
        for j, child in enumerate(pair):
            if random.random() < e.mutation_prob:
                mutant = _mutate(copy.deepcopy(child), pset, rng)
                pair[j] = mutant if _within_limits(mutant, config) else child
        children.extend(pair)
    return children


def crossover_one_point(a: gp.PrimitiveTree, b: gp.PrimitiveTree, rng: random.Random) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """Typed one-point crossover: swap a random subtree of ``a`` with one of the same type in ``b``
    (roots excluded), in place; trees of one node are returned unchanged.

    As DEAP's ``cxOnePoint``, but the type is drawn from the common types in name order:
    DEAP draws it from a set of type classes, whose order follows their memory addresses and so
    changes from one process to the next, which made runs differ between processes.
    """
    if len(a) < 2 or len(b) < 2:
        return a, b
    where_a: dict[type, list[int]] = {}
    where_b: dict[type, list[int]] = {}
    for tree, where in ((a, where_a), (b, where_b)):
        for i, node in enumerate(tree[1:], 1):
            where.setdefault(node.ret, []).append(i)
    common = sorted(where_a.keys() & where_b.keys(), key=lambda t: t.__name__)
    if common:
        type_ = rng.choice(common)
        slice_a, slice_b = a.searchSubtree(rng.choice(where_a[type_])), b.searchSubtree(rng.choice(where_b[type_]))
        a[slice_a], b[slice_b] = b[slice_b], a[slice_a]
    return a, b


def _mutate(tree: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped, rng: random.Random) -> gp.PrimitiveTree:
    kind = rng.choice(("subtree", "node", "shrink"))
    if kind == "subtree":
        def expr(pset: gp.PrimitiveSetTyped, type_: type) -> gp.PrimitiveTree:
            return programs.generate(type_, 0, rng.randint(1, 3), "grow", rng, pset)
        (tree,) = gp.mutUniform(tree, expr=expr, pset=pset)
    elif kind == "node":
        (tree,) = gp.mutNodeReplacement(tree, pset=pset)
    else:
        (tree,) = gp.mutShrink(tree)
    return tree


def _within_limits(tree: gp.PrimitiveTree, config: Config) -> bool:
    return tree.height <= config.evolution.max_depth and len(tree) <= config.evolution.max_size


def deduplicate(population: list[gp.PrimitiveTree], config: Config, generation: int) -> list[gp.PrimitiveTree]:
    """Replace repeated programs by fresh random ones (seeded by generation and position)."""
    seen, out, pset = set(), [], programs.primitive_set(config.evolution.statistics)
    for i, tree in enumerate(population):
        attempt = 0
        while str(tree) in seen and attempt < 20:
            rng = random.Random(derive_seed(config.run.seed, generation, "fresh", i, attempt))
            tree = programs.generate(programs.ROOT_TYPE, config.evolution.init_min_depth,
                                     config.evolution.init_max_depth, "grow", rng, pset)
            attempt += 1
        seen.add(str(tree))
        out.append(tree)
    return out


# ----------------------------------------------------------------------------- evaluation

def _evaluate_chunk(evaluator: Evaluator, texts: list[str]) -> np.ndarray:
    """Worker: the pool scores [P, B] of a chunk of programs (a row of NaN for a failing program)."""
    return np.stack([evaluator.safe_scores(programs.parse(t)) for t in texts])


def pool_scores(texts: list[str], pool: Resident[StatsBatch], config: Config) -> np.ndarray:
    """Scores [P, B] of every program on every network of the pool, in order; chunks of programs
    go to the run's workers, where the pool and its evaluator (with its memo) stay for the run.

    A chunk whose job failed on every attempt (`eznas.parallel.Failed`) is evaluated again one
    program per job; a program whose own job fails too scores NaN everywhere (so it gets the
    worst fitness), with a warning.
    """
    n = max(1, config.run.n_jobs)
    size = -(-len(texts) // n)
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    results = _run_chunks(chunks, pool, config)
    alone = [t for chunk, result in zip(chunks, results) if isinstance(result, Failed) for t in chunk]
    singles = dict(zip(alone, _run_chunks([[t] for t in alone], pool, config)))
    rows = []
    for chunk, result in zip(chunks, results):
        if isinstance(result, Failed):
            result = [_failed(t, singles[t], pool.value.n_nets) if isinstance(singles[t], Failed) else singles[t][0]
                      for t in chunk]
        rows.extend(result)
    return np.stack(rows)


def _run_chunks(chunks: list[list[str]], pool: Resident[StatsBatch], config: Config) -> list[np.ndarray | Failed]:
    """One fitness job per chunk of programs, with the run's retries and timeout."""
    labels = [f"programs {chunk[0]} .. {chunk[-1]}" if len(chunk) > 1 else f"program {chunk[0]}" for chunk in chunks]
    return run_with(_evaluate_chunk, pool, Evaluator.on_job_device, [(chunk,) for chunk in chunks], labels,
                    config.run.parallel)


def _failed(text: str, failed: Failed, n_nets: int) -> np.ndarray:
    """The scores of a program whose job failed: NaN, which gives it the worst fitness."""
    logging.getLogger(__name__).warning("program %s gets the worst fitness: its job failed on all %d attempts: %s",
                                        text, failed.attempts, failed.error)
    return np.full(n_nets, np.nan)


def sample_positions(sizes: dict[str, int], config: Config, generation: int) -> np.ndarray:
    """This generation's fitness networks: sample_size drawn afresh from every task's pool (of
    ``sizes[task]`` networks), as positions in the pools concatenated in order (each task's
    positions sorted)."""
    parts, offset = [], 0
    for task, size in sizes.items():
        rng = np.random.default_rng(derive_seed(config.run.seed, generation, "sample", task))
        parts.append(offset + np.sort(rng.choice(size, size=min(config.tasks.sample_size, size), replace=False)))
        offset += size
    return np.concatenate(parts)


def sample_fitness(scores: np.ndarray, pool: StatsBatch, sample: np.ndarray, config: Config) -> list[Fitness]:
    """Fitness of every program (a row of pool ``scores``) on the pool's networks at ``sample``."""
    reference = reference_scores(pool, config.tasks.relative_to)
    return fitness_of(scores[:, sample], pool.accuracy[sample], pool.task[sample], config.tasks.aggregate,
                      reference=None if reference is None else reference[:, sample])


# ----------------------------------------------------------------------------- results

def hall_of_fame(scored: dict[str, dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The best programs of the run by pool fitness (ties: smaller first), one per phenotype.

    A program whose per-task taus all equal those of a better-ranked program orders every pool
    alike (typically the same formula with a redundant branch) and is left out, so the ``size``
    places hold distinct rankings; the smallest program of each phenotype is the one kept.
    """
    ranked = sorted(scored.values(), key=lambda r: (-r["fitness"], r["size"], r["expr"]))
    seen: set[tuple[tuple[str, float], ...]] = set()
    kept = []
    for r in ranked:
        phenotype = tuple(sorted((task, round(tau, PHENOTYPE_DIGITS)) for task, tau in r["taus"].items()))
        if phenotype in seen:
            continue
        seen.add(phenotype)
        kept.append(r)
        if len(kept) == size:
            break
    return kept


def pareto_front(scored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Programs not beaten by a smaller-or-equal one with higher pool fitness, by size."""
    front, best = [], -float("inf")
    for r in sorted(scored.values(), key=lambda r: (r["size"], -r["fitness"], r["expr"])):
        if r["fitness"] > best:
            front.append(r)
            best = r["fitness"]
    return front


def score_leaders(population: list[str], fitness: list[float], state: State, scores: np.ndarray, pool: StatsBatch,
                  config: Config, generation: int) -> None:
    """Record the generation's leaders (not yet recorded) with their fitness on the whole pool
    (from their pool ``scores``), for the hall of fame."""
    order = sorted(range(len(population)), key=lambda i: (-fitness[i], len(population[i])))
    leaders: dict[str, int] = {}  # new leader -> its row, best first
    for i in order:
        if len(leaders) >= config.evolution.pool_fitness_top or fitness[i] == WORST:
            break
        if population[i] not in state.scored:
            leaders.setdefault(population[i], i)
    if not leaders:
        return
    rows = list(leaders.values())
    fits = fitness_of(scores[rows], pool.accuracy, pool.task, config.tasks.aggregate,
                      reference=reference_scores(pool, config.tasks.relative_to))
    for text, f in zip(leaders, fits):
        tree = programs.parse(text)
        state.scored[text] = {"expr": text, "infix": programs.infix(tree), "size": len(tree), "depth": tree.height,
                              "fitness": f.value, "taus": f.taus, "generation": generation}


RECENT = 3  # generations whose mean time forecasts the rest


def time_per_generation(history: list[dict[str, Any]]) -> float:
    """Seconds a further generation is expected to take: the mean of the last `RECENT` generations after
    generation 0 (which scores from cold workers), since programs, and their cost, grow during a run."""
    recent = [record["seconds"] for record in history if record["gen"] > 0][-RECENT:]
    return statistics.fmean(recent) if recent else (history[-1]["seconds"] if history else 0.0)


def log_generation(state: State, generation: int, fits: list[Fitness], population: list[str], seconds: float,
                   config: Config, echo: Callable[[str], None]) -> None:
    """Append this generation's record to the history and print one line."""
    values = [f.value for f in fits]
    best = max(range(len(fits)), key=lambda i: values[i])
    hof = hall_of_fame(state.scored, 1)
    sizes = [len(programs.parse(t)) for t in population]
    record = {"gen": generation, "evals": len(fits), "best": values[best], "median": statistics.median(values),
              "valid": sum(f.valid for f in fits) / len(fits), "median_size": statistics.median(sizes),
              "best_taus": fits[best].taus, "hof_fitness": hof[0]["fitness"] if hof else WORST,
              "seconds": round(seconds, 3)}
    state.history.append(record)
    done = generation + 1
    left = (config.evolution.generations + 1 - done) * time_per_generation(state.history)
    echo(f"gen {generation:4d}  evals {len(fits):5d}  best {record['best']:+.4f}  median {record['median']:+.4f}  "
         f"valid {record['valid']:.0%}  size {record['median_size']:5.1f}  hof {record['hof_fitness']:+.4f}  "
         f"{seconds:6.1f}s  left {left / 60:5.1f} min")


# ----------------------------------------------------------------------------- the run

def evolution_pools(config: Config, cache: StatsCache, data_dir: str | None, echo: Callable[[str], None]) -> tuple[dict[str, StatsBatch], dict[str, list[int]]]:
    """Sample every evolution task's pool (seeded) and load the statistics its programs may read
    (``evolution.statistics``), computing what is missing."""
    pools, indices = {}, {}
    for task in config.tasks.evolve:
        records = pool_records(config, task, data_dir)
        pools[task] = load_pool(task, records, config.probe, cache, config.run.parallel, data_dir,
                                needs=config.evolution.statistics)
        indices[task] = pools[task].index.tolist()
    echo("pools: " + ", ".join(f"{t} {p.n_nets} nets / {len(p.seg)} layers" for t, p in pools.items()))
    return pools, indices


def _results_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the keys that cannot change a run's results (where and how its jobs run),
    and with the keys it lacks at their defaults (a key newer than a checkpoint gives, at its default,
    the results the run that wrote the checkpoint had)."""
    full = {**config, **{name: {**keys, **config.get(name, {})} for name, keys in Config().to_dict().items()}}
    return {**full, "run": {k: v for k, v in full["run"].items() if k not in RUN_PLACEMENT_KEYS}}


def run(config: Config, out: str | os.PathLike, resume: bool = False, force: bool = False,
        data_dir: str | None = None, cache_dir: str | None = None, echo: Callable[[str], None] = print) -> State:
    """Run (or resume) an evolution into ``out``; returns the final state."""
    out = Path(out)
    prepare(out, resume, force)
    if resume:
        saved = read_checkpoint(out)
        if _results_config(saved["config"]) != _results_config(config.to_dict()):
            raise EznasError(f"{out / CHECKPOINT} was written with a different config; resume with the same config "
                             f"(see {out / 'config.json'}; only [run] n_jobs, backend, address, retries and timeout "
                             "may change) or --force")
    seeds = [] if resume else seed_programs(config)  # read before the pools: a bad seed fails at once
    cache = StatsCache(cache_dir) if cache_dir else StatsCache()
    pools, indices = evolution_pools(config, cache, data_dir, echo)
    full, sizes = concat(list(pools.values())), {task: pool.n_nets for task, pool in pools.items()}
    del pools  # the run keeps one copy of the statistics: the concatenated pool
    resident = Resident(full.digest(), full)
    if resume:
        state = State(next_generation=saved["next_generation"], population=saved["population"], fitness=saved["fitness"],
                      scored=saved["scored"], history=saved["history"], pools=saved["pools"], elapsed=saved["elapsed"])
        echo(f"resuming {out} at generation {state.next_generation}")
    else:
        write_config(out, config)
        state = State(next_generation=0, population=[], fitness=[], pools=indices)
    e = config.evolution
    while state.next_generation <= e.generations:
        g, start = state.next_generation, time.perf_counter()
        if g == 0:
            trees = init_population(config, seeds)
        else:
            trees = [programs.parse(t) for t in state.population]
            ranked = sorted(range(len(trees)), key=lambda i: (-state.fitness[i], len(trees[i])))
            elites = [trees[i] for i in ranked[:e.elites]]
            rng = random.Random(derive_seed(config.run.seed, g, "select"))
            parents = select(trees, state.fitness, e.population - e.elites, e.tournament_size, rng, e.parsimony)
            trees = deduplicate(elites + vary(parents, config, g), config, g)
        texts = [str(t) for t in trees]
        scores = pool_scores(texts, resident, config)
        fits = sample_fitness(scores, full, sample_positions(sizes, config, g), config)
        state.population, state.fitness = texts, [f.value for f in fits]
        score_leaders(texts, state.fitness, state, scores, full, config, g)
        seconds = time.perf_counter() - start
        state.elapsed += seconds
        state.next_generation = g + 1
        log_generation(state, g, fits, texts, seconds, config, echo)
        write_checkpoint(out, state.to_json(config))
    return state
