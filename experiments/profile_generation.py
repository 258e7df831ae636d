"""Profile: where a generation's time goes.

    python experiments/profile_generation.py [--config experiments/default.toml] [--generations 3]
                                             [--set KEY=VALUE ...] [--cache-dir DIR] [--data-dir DIR]

Runs a real evolution of ``--generations`` generations after generation 0 (the config's
backend and workers, into a temporary directory) with timers around the steps of
`eznas.evolve.run`: variation (`init_population`, `select`, `vary`, `deduplicate`), scoring on
the workers (`pool_scores`), Kendall tau on the generation's sample (`sample_fitness`), the
leaders' fitness on the whole pool (`score_leaders`), and after the timed generation the log
line and the checkpoint (`State.to_json`, `write_checkpoint`). The fitness jobs run a timed copy
of `eznas.evolve._evaluate_chunk` (same resident pool and evaluator, same programs), which
measures in its worker the chunk's parsing, every primitive call (by name: `primitives.by_name`
is wrapped in each process that evaluates) and the rest, the tree walk and memo. Nothing is
written to the cache when the config's pools are in it already.

The breakdown is printed for the warm generation of median time: its parts add up to its
seconds (the scoring step is the slowest chunk, as its worker measures it, plus the parallel
overhead of the step: wall time minus that chunk). Each chunk shows its start delay (from the
step's start to the job's start in its worker) and the time from its end to the step's end
(waiting for slower chunks, and its result's way back). Per-primitive seconds are summed over
all chunks of that generation (worker-seconds). Then what travels to the workers: bytes pickled
per fitness job with the pool resident (its key only) and once carrying the pool (the first
job on each worker), and the pool's pickling and unpickling time. Timings are wall-clock; on a
shared machine they are noisy. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any
from unittest import mock

import numpy as np
import torch

import primitives
from eznas import config, evolve, gp as programs
from eznas.backends import in_process
from eznas.fitness import Evaluator
from eznas.jobs import worker_threads
from eznas.parallel import Failed
from eznas.resident import Resident, run_with
from eznas.statsbatch import StatsBatch
from primitives import registry

LAPACK = frozenset({"logdet", "logdet_sum", "eig_ratio", "eig_entropy"})  # slogdet / eigvalsh per matrix
KIND_OF_MODULE = {"primitives.gram": "Gram builders", "primitives.elementwise": "elementwise",
                  "primitives.reductions": "other reductions", "primitives.aggregate": "aggregators"}
VARIATION = ("init_population", "select", "vary", "deduplicate")


def kind(name: str) -> str:
    """The kind of primitive ``name``: LAPACK reductions, Gram builders, elementwise, other reductions, aggregators."""
    return "LAPACK reductions" if name in LAPACK else KIND_OF_MODULE[registry.by_name(name).func.__module__]


# ----------------------------------------------------------------------------- in the workers

class PrimitiveTimer:
    """Stands in for `primitives.by_name` in one process: the same rows, whose functions add
    their seconds and calls (by primitive name) to `seconds` and `calls`."""

    def __init__(self, by_name: Callable[[str], primitives.Primitive]) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self._by_name = by_name
        self._rows: dict[str, primitives.Primitive] = {}

    def __call__(self, name: str) -> primitives.Primitive:
        row = self._rows.get(name)
        if row is None:
            prim = self._by_name(name)
            row = self._rows[name] = dataclasses.replace(prim, func=self._timed(name, prim.func))
        return row

    def _timed(self, name: str, func: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def timed(*args: Any) -> torch.Tensor:
            start = time.perf_counter()
            try:
                value = func(*args)
                if value.is_cuda:  # the time of the work, not of queueing it
                    torch.cuda.synchronize(value.device)
                return value
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.calls[name] += 1
        return timed


def process_timer() -> PrimitiveTimer:
    """This process's `PrimitiveTimer`, installed as `primitives.by_name` on first use."""
    if not hasattr(primitives.by_name, "calls"):  # not isinstance: this class may arrive pickled by value
        primitives.by_name = PrimitiveTimer(primitives.by_name)
    return primitives.by_name


def profiled_chunk(evaluator: Evaluator, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Worker: `eznas.evolve._evaluate_chunk`'s scores [P, B], and what the chunk's time went to."""
    timer = process_timer()
    seconds, calls = timer.seconds.copy(), timer.calls.copy()
    wall, start = time.time(), time.perf_counter()
    trees = [programs.parse(t) for t in texts]
    parsed = time.perf_counter()
    scores = np.stack([evaluator.safe_scores(t) for t in trees])
    end = time.perf_counter()
    spent = {name: (timer.seconds[name] - seconds[name], timer.calls[name] - calls[name]) for name in timer.calls
             if timer.calls[name] > calls[name]}
    return scores, {"pid": os.getpid(), "evaluator": id(evaluator), "start": wall, "end": wall + end - start,
                    "programs": len(texts), "nodes": sum(len(t) for t in trees), "seconds": end - start,
                    "parse": parsed - start, "primitives": spent}


# ----------------------------------------------------------------------------- in the caller

class Recorder:
    """Timings of a run's generations, filled by the wrappers `profiled` puts around `eznas.evolve`."""

    def __init__(self) -> None:
        self.generations: list[dict[str, Any]] = []
        self.open: dict[str, Any] = self._fresh()
        self.pool: Resident[StatsBatch] | None = None
        self.evaluators: set[tuple[int, int]] = set()

    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {"steps": collections.Counter(), "chunks": []}

    def close(self, generation: int, seconds: float) -> None:
        """End generation ``generation`` (its engine-measured ``seconds``)."""
        self.generations.append({"gen": generation, "seconds": seconds, **self.open})
        self.open = self._fresh()

    def timed(self, step: str, func: Callable[..., Any], after: bool = False) -> Callable[..., Any]:
        """``func``, adding its seconds to ``step`` of the open generation (``after``: of the last closed one)."""
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                (self.generations[-1] if after else self.open)["steps"][step] += time.perf_counter() - start
        return wrapper

    def run_chunks(self, chunks: list[list[str]], pool: Resident[StatsBatch], cfg: config.Config) -> list[Any]:
        """As `eznas.evolve._run_chunks`, with `profiled_chunk` as the job: keeps each chunk's report."""
        self.pool = pool
        submitted = time.time()
        results = run_with(profiled_chunk, pool, Evaluator.on_job_device, [(chunk,) for chunk in chunks],
                           [f"profiled chunk {i}" for i in range(len(chunks))], cfg.run.parallel)
        done = time.time()
        scores = []
        for chunk, result in zip(chunks, results):
            if isinstance(result, Failed):
                scores.append(result)
                continue
            values, report = result
            built = (report["pid"], report["evaluator"])
            sent = (evolve._evaluate_chunk, pool, Evaluator.on_job_device, chunk)
            report.update(start_delay=report["start"] - submitted, until_step_end=done - report["end"],
                          bytes_sent=len(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)),
                          bytes_returned=len(pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)),
                          evaluator_built=built not in self.evaluators)
            self.evaluators.add(built)
            self.open["chunks"].append(report)
            scores.append(values)
        return scores

    def closing(self, log_generation: Callable[..., None]) -> Callable[..., None]:
        """``log_generation`` (`eznas.evolve.log_generation`), closing the generation first and timed as ``log``."""
        logged = self.timed("log", log_generation, after=True)

        def wrapper(state: evolve.State, generation: int, fits: list, population: list[str], seconds: float,
                    cfg: config.Config, echo: Callable[[str], None]) -> None:
            self.close(generation, seconds)
            logged(state, generation, fits, population, seconds, cfg, echo)
        return wrapper


@contextlib.contextmanager
def profiled(recorder: Recorder):
    """`eznas.evolve`'s steps wrapped with ``recorder``'s timers, and its fitness jobs profiled."""
    steps = {name: recorder.timed(name, getattr(evolve, name)) for name in VARIATION}
    steps |= {"pool_scores": recorder.timed("scoring", evolve.pool_scores),
              "sample_fitness": recorder.timed("kendall_tau", evolve.sample_fitness),
              "score_leaders": recorder.timed("leaders", evolve.score_leaders),
              "write_checkpoint": recorder.timed("checkpoint", evolve.write_checkpoint, after=True),
              "_run_chunks": recorder.run_chunks, "log_generation": recorder.closing(evolve.log_generation)}
    with contextlib.ExitStack() as stack:
        for name, wrapper in steps.items():
            stack.enter_context(mock.patch.object(evolve, name, wrapper))
        stack.enter_context(mock.patch.object(evolve.State, "to_json",
                                              recorder.timed("checkpoint", evolve.State.to_json, after=True)))
        yield


# ----------------------------------------------------------------------------- the breakdown

def summary(gen: dict[str, Any]) -> dict[str, Any]:
    """One generation's parts (seconds; they add up to ``total``), its chunks and primitives."""
    steps, chunks = gen["steps"], gen["chunks"]
    if not chunks:
        raise SystemExit(f"generation {gen['gen']}: every fitness job failed (see the warnings above): nothing to profile")
    slowest = max(chunks, key=lambda c: c["seconds"])
    prim_slowest = sum(s for s, _ in slowest["primitives"].values())
    parts = {"variation": sum(steps[s] for s in VARIATION),
             "chunk_parse": slowest["parse"], "chunk_primitives": prim_slowest,
             "chunk_walk_and_memo": slowest["seconds"] - slowest["parse"] - prim_slowest,
             "parallel_overhead": steps["scoring"] - slowest["seconds"],
             "kendall_tau": steps["kendall_tau"], "leaders_pool_fitness": steps["leaders"]}
    parts["rest_of_loop"] = gen["seconds"] - sum(parts.values())
    per_name: dict[str, list[float]] = {}
    for chunk in chunks:
        for name, (s, n) in chunk["primitives"].items():
            per_name.setdefault(name, [0.0, 0])
            per_name[name][0] += s
            per_name[name][1] += n
    kinds_slowest = collections.Counter()
    for name, (s, _) in slowest["primitives"].items():
        kinds_slowest[kind(name)] += s
    kinds = collections.Counter()
    for name, (s, _) in per_name.items():
        kinds[kind(name)] += s
    return {"gen": gen["gen"], "total": gen["seconds"], "parts": parts,
            "slowest_chunk_kinds": dict(kinds_slowest), "after_generation": {k: steps[k] for k in ("log", "checkpoint")},
            "chunk_work": sum(c["seconds"] for c in chunks), "kinds": dict(kinds),
            "primitives": {name: {"kind": kind(name), "calls": n, "seconds": s}
                           for name, (s, n) in sorted(per_name.items(), key=lambda kv: -kv[1][0])},
            "chunks": [{k: c[k] for k in ("programs", "nodes", "seconds", "parse", "start_delay", "until_step_end",
                                          "bytes_sent", "bytes_returned", "evaluator_built")}
                       | {"primitive_calls": sum(n for _, n in c["primitives"].values()),
                          "primitive_seconds": sum(s for s, _ in c["primitives"].values())} for c in chunks]}


def transfer(pool: Resident[StatsBatch]) -> dict[str, Any]:
    """What the pool costs to send: its bytes in memory, pickled with the key only and carried,
    and the pickling and unpickling time of the carried form."""
    start = time.perf_counter()
    carried = pickle.dumps(pool.carrying(), protocol=pickle.HIGHEST_PROTOCOL)
    dumped = time.perf_counter()
    pickle.loads(carried)
    loaded = time.perf_counter()
    value = pool.value
    tensors = list(value.layers.values()) + list(value.net.values()) + [value.seg]
    return {"pool_bytes_in_memory": sum(t.numel() * t.element_size() for t in tensors),
            "pool_bytes_pickled": len(carried), "pickle_seconds": dumped - start, "unpickle_seconds": loaded - dumped,
            "handle_bytes_key_only": len(pickle.dumps(pool, protocol=pickle.HIGHEST_PROTOCOL))}


def _row(label: str, seconds: float, total: float, indent: int = 0) -> str:
    return f"  {' ' * indent}{label:<{46 - indent}} {seconds:9.3f}  {100 * seconds / total:6.1f}%"


def report(cfg: config.Config, path: str, profile: dict[str, Any], gens: list[dict[str, Any]],
           moved: dict[str, Any]) -> None:
    """Print the per-generation table, the breakdown of the profiled generation, its primitives and the transfer."""
    parallel = cfg.run.parallel
    print(f"{path}: {cfg.evolution.population} programs, {parallel.jobs} {parallel.backend} worker(s), pool "
          f"{profile['pool_networks']} networks / {profile['pool_layers']} layers, torch threads per worker "
          f"{profile['worker_threads']}")
    print(f"  {'gen':>3} {'seconds':>8} {'variation':>9} {'chunks':>15} {'overhead':>8} {'tau':>6} {'leaders':>7} "
          f"{'rest':>6} {'log+ckpt':>8}")
    for g in gens:
        p, slow = g["parts"], [c["seconds"] for c in g["chunks"]]
        print(f"  {g['gen']:>3} {g['total']:8.2f} {p['variation']:9.3f} {'/'.join(f'{s:.2f}' for s in slow):>15} "
              f"{p['parallel_overhead']:8.3f} {p['kendall_tau']:6.3f} {p['leaders_pool_fitness']:7.3f} "
              f"{p['rest_of_loop']:6.3f} {sum(g['after_generation'].values()):8.3f}")
    w = next(g for g in gens if g["gen"] == profile["profiled_generation"])
    p, total = w["parts"], w["total"]
    print(f"\nwarm generation {w['gen']} (median time of generations 1-{gens[-1]['gen']}): {total:.3f} s")
    print(f"  {'part':<46} {'seconds':>9}  {'of gen':>7}")
    print(_row("variation (select, vary, deduplicate)", p["variation"], total))
    chunk = p["chunk_parse"] + p["chunk_primitives"] + p["chunk_walk_and_memo"]
    print(_row("scoring: slowest chunk, in its worker", chunk, total))
    print(_row("parse programs", p["chunk_parse"], total, 2))
    print(_row("primitives", p["chunk_primitives"], total, 2))
    for k, s in sorted(w["slowest_chunk_kinds"].items(), key=lambda kv: -kv[1]):
        print(_row(k, s, total, 4))
    print(_row("tree walk, memo, scores to numpy", p["chunk_walk_and_memo"], total, 2))
    print(_row("scoring: parallel overhead (wall - slowest)", p["parallel_overhead"], total))
    print(_row("Kendall tau of the sample (sample_fitness)", p["kendall_tau"], total))
    print(_row("leaders' fitness on the whole pool", p["leaders_pool_fitness"], total))
    print(_row("rest of the loop (parse, str, sample draw)", p["rest_of_loop"], total))
    print(_row("total", total, total))
    after = w["after_generation"]
    print(f"  after it, outside its seconds: log line {after['log']:.3f} s, checkpoint (build, write) {after['checkpoint']:.3f} s")
    print(f"\nchunks of generation {w['gen']}:")
    print(f"  {'programs':>8} {'nodes':>6} {'computed':>8} {'worker s':>8} {'prims s':>8} {'start delay':>11} "
          f"{'until end':>9} {'sent B':>8} {'back B':>9}  evaluator")
    for c in w["chunks"]:
        print(f"  {c['programs']:8d} {c['nodes']:6d} {c['primitive_calls']:8d} {c['seconds']:8.3f} "
              f"{c['primitive_seconds']:8.3f} {c['start_delay']:11.3f} {c['until_step_end']:9.3f} {c['bytes_sent']:8d} "
              f"{c['bytes_returned']:9d}  {'built' if c['evaluator_built'] else 'resident'}")
    work = w["chunk_work"]
    print(f"\nprimitives of generation {w['gen']}, all chunks ({work:.3f} worker-seconds of chunk work):")
    print(f"  {'primitive':<16} {'kind':<18} {'calls':>6} {'seconds':>8} {'of work':>8}")
    for name, r in w["primitives"].items():
        print(f"  {name:<16} {r['kind']:<18} {r['calls']:6d} {r['seconds']:8.3f} {100 * r['seconds'] / work:7.1f}%")
    for k, s in sorted(w["kinds"].items(), key=lambda kv: -kv[1]):
        print(f"  {'= ' + k:<35} {'':>6} {s:8.3f} {100 * s / work:7.1f}%")
    cold = gens[0]["chunks"]
    delays = ", ".join(f"{c['start_delay']:.2f}" for c in cold)
    print(f"\nto the workers: the pool is {moved['pool_bytes_in_memory'] / 2**20:.1f} MiB in memory, "
          f"{moved['pool_bytes_pickled'] / 2**20:.1f} MiB pickled ({moved['pickle_seconds']:.2f} s to pickle, "
          f"{moved['unpickle_seconds']:.2f} s to unpickle); it travels once per worker process (generation 0: "
          f"{sum(c['evaluator_built'] for c in cold)} of {len(cold)} chunks built their evaluator, start delays "
          f"{delays} s), then a job carries its key ({moved['handle_bytes_key_only']} B pickled) and its programs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/default.toml", help="run config (default experiments/default.toml)")
    parser.add_argument("--generations", type=int, default=3, help="generations after generation 0 (default 3)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. run.n_jobs=1 (repeatable)")
    parser.add_argument("--cache-dir", help="statistics cache (default $EZNAS_CACHE_DIR or ./.eznas_cache)")
    parser.add_argument("--data-dir", help="benchmark data directory (default: found as eznas finds it)")
    args = parser.parse_args()
    if args.generations < 1:
        parser.error("need --generations >= 1: generation 0 is cold, the profile is of a later one")
    cfg = config.load(args.config, [*args.set, f"evolution.generations={args.generations}"])
    if cfg.run.backend == "loky" and not in_process("loky", cfg.run.n_jobs) and find_spec("cloudpickle") is None:
        parser.error("the timed fitness job is defined in this script, which loky workers receive only with "
                     "cloudpickle: pip install cloudpickle (or --set run.n_jobs=1)")
    recorder = Recorder()
    with tempfile.TemporaryDirectory() as out, profiled(recorder):
        evolve.run(cfg, out, data_dir=args.data_dir, cache_dir=args.cache_dir, echo=lambda line: None)
    gens = [summary(g) for g in recorder.generations]
    warm = sorted(gens[1:], key=lambda g: g["total"])[(len(gens) - 2) // 2]
    pool = recorder.pool.value
    profile = {"config": args.config, "population": cfg.evolution.population, "n_jobs": cfg.run.n_jobs,
               "backend": cfg.run.backend, "pool_networks": pool.n_nets, "pool_layers": len(pool.seg),
               "worker_threads": torch.get_num_threads() if in_process(cfg.run.backend, cfg.run.n_jobs) else
               worker_threads(cfg.run.n_jobs), "profiled_generation": warm["gen"],
               "generation_seconds": [g["total"] for g in gens],
               "warm_median_seconds": statistics.median(g["total"] for g in gens[1:])}
    moved = transfer(recorder.pool)
    report(cfg, args.config, profile, gens, moved)
    print(json.dumps({**profile, "warm": warm, "transfer": moved, "generations": gens}))


if __name__ == "__main__":
    main()
