"""Benchmark: program evaluations per second on 200 cached NB201 networks, batched (all layers
of all networks in one call per primitive, memoised subtrees) vs a naive Python loop over
networks and layers; and generations per minute of an evolution config.

    python experiments/bench_fitness.py [--config experiments/default.toml] [--programs 100]

Needs the statistics of the config's nb201:cifar10 pool in the cache (``eznas evolve`` or
``eznas stats`` fills it; missing ones are computed first). Prints its figures; the last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import time

import torch
from deap import gp

import primitives
from eznas import benchmarks, config, gp as programs
from eznas.cache import StatsCache
from eznas.evolve import evaluate_population, sample_batch
from eznas.run import derive_seed
from eznas.fitness import Evaluator
from eznas.pool import load_pool
from eznas.statsbatch import StatsBatch

PER_LAYER = (primitives.WMat, primitives.AMat, primitives.Gram, primitives.LScalar)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/default.toml")
    parser.add_argument("--programs", type=int, default=100, help="random programs timed (default 100)")
    parser.add_argument("--naive-programs", type=int, default=10, help="of those, timed with the naive loop")
    args = parser.parse_args()
    cfg = config.load(args.config)
    torch.set_num_threads(2)
    task = "nb201:cifar10"
    records = sorted(benchmarks.sample(task, 200, derive_seed(cfg.run.seed, "pool", task)), key=lambda r: r["index"])
    pool = load_pool(task, records, cfg.probe, StatsCache(), n_jobs=cfg.run.n_jobs)
    rng = random.Random(0)
    trees = [programs.generate(programs.ROOT_TYPE, 2, cfg.evolution.init_max_depth, rng.choice(("grow", "full")), rng)
             for _ in range(args.programs)]

    start = time.perf_counter()
    evaluator = Evaluator(pool)
    batched = [evaluator.scores(t) for t in trees]
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    naive = [naive_scores(t, pool) for t in trees[: args.naive_programs]]
    t_naive = time.perf_counter() - start
    agree = sum(torch.allclose(a, b, rtol=1e-3, atol=1e-4, equal_nan=True) for a, b in zip(batched, naive))
    batched_rate = len(trees) / t_batched
    naive_rate = len(naive) / t_naive
    print(f"pool: {pool.n_nets} networks, {len(pool.seg)} layers; {len(trees)} random programs")
    print(f"batched+memo: {batched_rate:.1f} programs/s   naive loop: {naive_rate:.2f} programs/s   "
          f"ratio {batched_rate / naive_rate:.1f}x   (naive == batched on {agree}/{len(naive)})")

    pools = {t: load_pool(t, sorted(benchmarks.sample(t, cfg.tasks.pool_size, derive_seed(cfg.run.seed, "pool", t)),
                                    key=lambda r: r["index"]), cfg.probe, StatsCache(), n_jobs=cfg.run.n_jobs)
             for t in cfg.tasks.evolve}
    population = [str(programs.generate(programs.ROOT_TYPE, cfg.evolution.init_min_depth, cfg.evolution.init_max_depth,
                                        "grow" if i % 2 else "full", random.Random(i)))
                  for i in range(cfg.evolution.population)]
    start = time.perf_counter()
    evaluate_population(population, sample_batch(pools, cfg, 1), cfg)
    t_gen = time.perf_counter() - start
    print(f"one generation of {args.config} ({cfg.evolution.population} programs, {cfg.run.n_jobs} jobs, "
          f"{cfg.run.backend}): {t_gen:.1f} s -> {60 / t_gen:.2f} generations/min")
    print(json.dumps({"pool_networks": pool.n_nets, "pool_layers": len(pool.seg), "programs": len(trees),
                      "batched_programs_per_s": round(batched_rate, 2), "naive_programs_per_s": round(naive_rate, 3),
                      "speedup": round(batched_rate / naive_rate, 1), "naive_agrees": f"{agree}/{len(naive)}",
                      "generation_seconds": round(t_gen, 2), "generations_per_minute": round(60 / t_gen, 2)}))


if __name__ == "__main__":
    main()
