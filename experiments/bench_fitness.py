"""Benchmark: fitness evaluation speed.

    python experiments/bench_fitness.py [--config experiments/default.toml ...] [--programs 100]
                                        [--naive 30] [--generations 3] [--threads 2]

1. A fixed, seeded set of ``--programs`` random programs (ramped half-and-half, depth 2 to the
   first config's ``init_max_depth``, `random.Random(0)`: the same set on every run) is scored on
   the 200 cached NB201 CIFAR-10 networks of that config's pool, batched (all layers of all
   networks in one call per primitive, one evaluator memoising subtrees over the set); every
   k-th program of the set (``--naive`` of them) is also scored by a naive Python loop over
   networks and, inside, over layers. The ratio is naive time / batched time on those programs.
   Beside it, the batched path's seconds in the LAPACK reductions (`profile_generation.LAPACK`:
   slogdet and eigvalsh, which both paths run one matrix at a time): naive time / those seconds
   is the ceiling of the ratio for as long as they stay.
2. For each ``--config``: a real evolution of ``--generations`` generations after generation 0
   (its backend and workers, into a temporary directory), timed generation by generation:
   generation 0 starts cold (workers start, nothing memoised), the later ones are what a long
   run spends per generation.

Needs the statistics of each config's evolution pools in the cache (``eznas evolve`` or
``eznas stats`` fills it; missing ones are computed first). Timings are wall-clock, with CPU
seconds beside them (this process; for the generations, eznas and its worker processes, with
psutil). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import random
import statistics
import tempfile
import time
from unittest import mock

import torch
from deap import gp

import primitives
from eznas import benchmarks, config, evolve, gp as programs
from eznas.cache import StatsCache
from eznas.fitness import Evaluator
from eznas.pool import load_pool
from eznas.run import derive_seed
from eznas.statsbatch import StatsBatch
from profile_generation import LAPACK, PrimitiveTimer

PER_LAYER = (primitives.WMat, primitives.AMat, primitives.Gram, primitives.LScalar)
MATRIX_TYPES = (primitives.WMat, primitives.AMat, primitives.Gram)


def naive_scores(tree: gp.PrimitiveTree, batch: StatsBatch) -> torch.Tensor:
    """Score every network by looping over networks and, inside, over layers one at a time."""
    return torch.cat([programs.fold(tree, functools.partial(_naive_node, batch.select([n])))
                      for n in range(batch.n_nets)])


def _naive_node(net: StatsBatch, node: programs.Node, args: list, key: str) -> torch.Tensor | list[torch.Tensor]:
    """One node on one network: a per-layer value is a list of one-layer tensors, computed layer by layer."""
    per_layer = node.ret in PER_LAYER
    if isinstance(node, gp.Terminal):
        value = _terminal(node.name, net)
        return list(value.split(1)) if per_layer else value
    prim = primitives.by_name(node.name)
    if prim.aggregator:  # needs every layer at once
        value = prim.func(*[torch.cat(a) if isinstance(a, list) else a for a in args], net.context())
        return list(value.split(1)) if per_layer else value
    if per_layer:
        return [prim.func(*layer) for layer in zip(*args)]
    return prim.func(*args)


def _terminal(name: str, net: StatsBatch) -> torch.Tensor:
    if name in programs.CONSTANTS:
        typ, v = programs.CONSTANTS[name]
        return torch.full((len(net.seg) if typ is primitives.LScalar else 1,), v)
    return net.layers[name] if name in net.layers else net.net[name]


def program_set(n: int, max_depth: int) -> list[gp.PrimitiveTree]:
    """The fixed benchmark set: ``n`` ramped half-and-half programs from `random.Random(0)`."""
    rng = random.Random(0)
    return [programs.generate(programs.ROOT_TYPE, 2, max_depth, rng.choice(("grow", "full")), rng) for _ in range(n)]


def describe(trees: list[gp.PrimitiveTree]) -> dict[str, object]:
    """Size distribution of a program set: quartiles, a histogram, how many touch matrices."""
    sizes = sorted(len(t) for t in trees)
    bins = collections.Counter(next(f"{lo}-{hi}" for lo, hi in ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10**9))
                                    if lo <= s <= hi) for s in sizes)
    return {"n": len(trees), "size_min": sizes[0], "size_median": statistics.median(sizes), "size_max": sizes[-1],
            "size_quartiles": [float(q) for q in statistics.quantiles(sizes, n=4)], "size_histogram": dict(sorted(bins.items())),
            "with_matrix_nodes": sum(any(node.ret in MATRIX_TYPES for node in t) for t in trees)}


def _timed(func, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    value = func(*args)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def bench_programs(cfg: config.Config, n_programs: int, n_naive: int) -> dict[str, object]:
    """Part 1: batched vs naive on the fixed program set and the config's NB201 CIFAR-10 pool."""
    task = "nb201:cifar10"
    records = sorted(benchmarks.sample(task, 200, derive_seed(cfg.run.seed, "pool", task)), key=lambda r: r["index"])
    pool = load_pool(task, records, cfg.probe, StatsCache(), cfg.run.parallel)
    trees = program_set(n_programs, cfg.evolution.init_max_depth)
    naive_at = list(range(0, n_programs, max(1, n_programs // n_naive)))[:n_naive]
    evaluator = Evaluator(pool)
    timer = PrimitiveTimer(primitives.by_name)
    lapack = []  # seconds of each batched program in the LAPACK reductions
    with mock.patch.object(primitives, "by_name", timer):
        batched = []
        for t in trees:
            before = sum(timer.seconds[name] for name in LAPACK)
            batched.append(_timed(evaluator.scores, t))
            lapack.append(sum(timer.seconds[name] for name in LAPACK) - before)
    naive = [_timed(naive_scores, trees[i], pool) for i in naive_at]
    agree = sum(torch.allclose(batched[i][0], v, rtol=1e-3, atol=1e-4, equal_nan=True) for i, (v, _, _) in zip(naive_at, naive))
    batched_wall, batched_cpu = sum(b[1] for b in batched), sum(b[2] for b in batched)
    sub_wall, sub_cpu = sum(batched[i][1] for i in naive_at), sum(batched[i][2] for i in naive_at)
    naive_wall, naive_cpu = sum(v[1] for v in naive), sum(v[2] for v in naive)
    sub_lapack = sum(lapack[i] for i in naive_at)
    result = {"pool_networks": pool.n_nets, "pool_layers": len(pool.seg), "programs": describe(trees),
              "naive_programs": describe([trees[i] for i in naive_at]),
              "batched_programs_per_s": round(n_programs / batched_wall, 2),
              "batched_programs_per_cpu_s": round(n_programs / batched_cpu, 2),
              "naive_programs_per_s": round(len(naive) / naive_wall, 3),
              "speedup": round(naive_wall / sub_wall, 1), "speedup_cpu": round(naive_cpu / sub_cpu, 1),
              "naive_agrees": f"{agree}/{len(naive)}",
              "batched_lapack_share": round(sub_lapack / sub_wall, 3),
              "speedup_ceiling": round(naive_wall / sub_lapack, 1) if sub_lapack else None}
    print(f"pool: {pool.n_nets} networks, {len(pool.seg)} layers; fixed set of {n_programs} programs "
          f"(sizes {result['programs']['size_histogram']}), {len(naive)} of them also naive")
    print(f"batched+memo: {result['batched_programs_per_s']:.1f} programs/s ({result['batched_programs_per_cpu_s']:.1f} "
          f"per CPU s)   naive loop: {result['naive_programs_per_s']:.2f} programs/s   ratio on the naive programs "
          f"{result['speedup']:.1f}x (CPU {result['speedup_cpu']:.1f}x)   naive == batched on {result['naive_agrees']}")
    print(f"LAPACK reductions (one matrix at a time in both paths): {100 * result['batched_lapack_share']:.0f}% of "
          f"the batched time on the naive programs; ceiling of the ratio while they stay: naive / LAPACK = "
          f"{result['speedup_ceiling']}x")
    return result


def _tree_cpu() -> float:
    """CPU seconds used so far by this process and its worker processes (psutil; NaN without it)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, and those of reaped children
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def bench_generations(path: str, generations: int) -> dict[str, object]:
    """Part 2: a real evolution of ``generations`` generations after generation 0, timed per
    generation in wall seconds and in CPU seconds of eznas and its workers together."""
    cfg = config.load(path, [f"evolution.generations={generations}"])
    cpu = [_tree_cpu()]
    with tempfile.TemporaryDirectory() as out:
        state = evolve.run(cfg, out, echo=lambda line: cpu.append(_tree_cpu()) if line.startswith("gen") else None)
    seconds = [h["seconds"] for h in state.history]
    cpu_seconds = [round(b - a, 2) for a, b in zip(cpu[1:], cpu[2:])]  # cpu[1]: the end of generation 0
    warm, warm_cpu = statistics.median(seconds[1:]), statistics.median(cpu_seconds)
    result = {"config": path, "population": cfg.evolution.population, "n_jobs": cfg.run.n_jobs,
              "backend": cfg.run.backend, "generation_seconds": seconds, "cold_generation_seconds": seconds[0],
              "warm_generation_seconds": warm, "warm_generation_cpu_seconds": cpu_seconds,
              "warm_generation_cpu_median": warm_cpu}
    print(f"{path} ({cfg.evolution.population} programs, {cfg.run.n_jobs} jobs, {cfg.run.backend}): generation 0 "
          f"{seconds[0]:.1f} s (cold), then median {warm:.1f} s per generation ({', '.join(f'{s:.1f}' for s in seconds[1:])}); "
          f"CPU of eznas and its workers per later generation: median {warm_cpu:.1f} s ({', '.join(map(str, cpu_seconds))})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="run config timed per generation (repeatable; "
                        "default experiments/default.toml); the first also gives the program set's pool")
    parser.add_argument("--programs", type=int, default=100, help="size of the fixed program set (default 100)")
    parser.add_argument("--naive", type=int, default=30, help="programs of the set also timed naively (default 30)")
    parser.add_argument("--generations", type=int, default=3, help="generations timed after generation 0 (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of this process (default 2)")
    args = parser.parse_args()
    if args.generations < 1 or args.naive < 1 or args.programs < args.naive:
        parser.error("need --generations >= 1 and 1 <= --naive <= --programs")
    paths = args.config or ["experiments/default.toml"]
    torch.set_num_threads(args.threads)
    report = {"program_set": bench_programs(config.load(paths[0]), args.programs, args.naive),
              "generations": [bench_generations(p, args.generations) for p in paths]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
