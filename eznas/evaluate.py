"""The evaluation protocol: any proxy on a benchmark sample -> Kendall tau-b, Spearman rho,
top-10% precision and cost, through the score cache.

Every proxy (`eznas.proxy_spec`) sees the same networks (the task's benchmark architectures
built with net seed 0) and the same batch (``inputs.batch(task, 64, seed)``); the sample is
``benchmarks.sample(task, n, seed)`` (or every network), optionally without the networks an
evolution run used (``--exclude-run``, `eznas.run.used_indices`). A proxy that raises or
returns a non-finite score on a network gets NaN there; the failures are counted and the
correlations use the finite scores. Seconds per network time the proxy call alone (the
network is built and the batch drawn outside the timer); for an expression, the probe that
computes the statistics, measured when this command computes them (statistics found in the
cache from elsewhere have no timing). Per-network results go to the score cache
(`eznas.scores`), so repeated and compared evaluations only score what is new.

Networks are scored by jobs (`eznas.parallel.run_tasks`, with the caller's `Parallel` settings),
each on its own device (`eznas.jobs.job_device`) of the kind the calling process sees: scores
computed on a GPU go to score files of their own (`eznas.scores`), as statistics do
(`eznas.pool`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps
from tqdm import tqdm

from eznas import benchmarks, inputs, proxies
from eznas.cache import StatsCache
from eznas.errors import EznasError
from eznas.jobs import device_kind, job_device
from eznas.netjob import network_and_batch
from eznas.parallel import Failed, Parallel, run_tasks
from eznas.pool import fill_cache, load_pool
from eznas.probe import ProbeSettings
from eznas.proxy_spec import ProxySpec, resolve, scorer
from eznas.run import RunInfo, read_run, used_indices
from eznas.scores import SCORES_DIR, ScoreCache
from eznas.tasks import Task, parse_task

BATCH_SIZE = 64  # images in the batch every proxy sees (the protocol's default)
NET_SEED = 0  # initialisation seed of every evaluated network
TOP_FRACTION = 0.1  # precision is measured on the top 10% of networks
SECONDS_DIGITS = 6  # a proxy call's wall time is kept to the microsecond (finer digits are timer noise)


# ----------------------------------------------------------------------------- scoring

def _clean(value: Any) -> tuple[Any, str | None]:
    """A proxy's return value as JSON-able data, or (None, reason) when it is not a finite number."""
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}, None
    value = float(value)
    return (value, None) if math.isfinite(value) else (None, f"non-finite score {value}")


def score_network(task: Task, arch: Any, seed: int, batch_size: int, specs: Sequence[ProxySpec],
                  data_dir: str | None, kind: str = "cpu") -> list[dict[str, Any]]:
    """Worker: build one network and its batch on this job's device of ``kind``, run each
    baseline/file proxy on it, time each call."""
    net, x, y = network_and_batch(task, arch, NET_SEED, batch_size, seed, "real", data_dir, job_device(kind))
    results = []
    for spec in specs:
        func = scorer(spec)
        start = time.perf_counter()
        try:
            value, error = _clean(func(net, x, y))
        except Exception as e:  # a proxy failing on one network is recorded, not fatal
            value, error = None, f"{type(e).__name__}: {' '.join(str(e).split())}"
        results.append({"value": value, "seconds": round(time.perf_counter() - start, SECONDS_DIGITS), "error": error})
    return results


@dataclass(frozen=True)
class _Run:
    """Where and how one evaluation runs."""

    task: Task
    seed: int
    batch_size: int
    parallel: Parallel
    kind: str  # the device kind of the jobs (`eznas.jobs.device_kind`)
    data_dir: str | None
    cache_root: Path
    probe_cfg: ProbeSettings
    progress: bool


def _score_networks(run: _Run, specs: Sequence[ProxySpec], caches: Sequence[ScoreCache],
                    records: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Fill the caches of baseline/file proxies: one job per network, for the proxies it lacks.

    Returns the networks whose job failed outright (worker crash, network not buildable), with
    the reason; those are not cached, so the next run tries them again.
    """
    todo = []
    for r in records:
        missing = [i for i, c in enumerate(caches) if c.get(r["index"]) is None]
        if missing:
            todo.append((r, missing))
    if not todo:
        return {}
    jobs = [(score_network, (run.task, r["arch"], run.seed, run.batch_size, [specs[i] for i in missing],
                             run.data_dir, run.kind)) for r, missing in todo]
    labels = [f"{run.task.name} #{r['index']}" for r, _ in todo]
    lost = {}
    bar = tqdm(total=len(todo), desc=f"scoring {run.task.name}", unit="net", disable=not run.progress,
               dynamic_ncols=True)
    try:
        for (r, missing), results in zip(todo, run_tasks(jobs, run.parallel, labels=labels)):
            if isinstance(results, Failed):
                lost[r["index"]] = results.error
            else:
                for i, entry in zip(missing, results):
                    caches[i].put(r["index"], entry)
            bar.update(1)
    finally:
        bar.close()
        for c in caches:
            c.flush()
    return lost


def _score_expression(run: _Run, spec: ProxySpec, cache: ScoreCache, records: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Fill the cache of an expression: probe the statistics it reads where the statistics cache lacks them
    (timed: the seconds are what its exported file would spend), then run the engine.

    Returns the networks whose statistics failed (left out of the pool), with the reason; those
    are not cached, so the next run tries them again.
    """
    if all(cache.get(r["index"]) is not None for r in records):
        return {}
    from eznas import gp as programs  # DEAP, only for expressions
    from eznas.fitness import Evaluator

    stats_cache = StatsCache(run.cache_root)
    cfg = run.probe_cfg
    tree = programs.parse(spec.ref)
    needs = programs.probe_needs(tree)
    seconds = fill_cache(run.task.name, records, cfg, stats_cache, run.parallel, run.data_dir, run.progress,
                         needs).seconds  # a failed probe is tried again by load_pool, untimed
    batch = load_pool(run.task.name, records, cfg, stats_cache, run.parallel, run.data_dir, False, needs)
    kept = set(batch.index.tolist())
    try:
        values = Evaluator.on_job_device(batch).scores(tree).double().tolist()
        error = None
    except (RuntimeError, ValueError, IndexError) as e:  # a failing program scores NaN everywhere
        values, error = [math.nan] * len(kept), f"{type(e).__name__}: {' '.join(str(e).split())}"
    for r, v in zip([r for r in records if r["index"] in kept], values):
        old = cache.get(r["index"]) or {}
        value, why = _clean(v) if error is None else (None, error)
        cache.put(r["index"], {"value": value, "seconds": seconds.get(r["index"], old.get("seconds")), "error": why})
    cache.flush()
    return {r["index"]: "statistics could not be computed (see the warnings)" for r in records if r["index"] not in kept}


# ----------------------------------------------------------------------------- results


def median_known(seconds: Sequence[float] | np.ndarray) -> float:
    """Median of the finite values (per-network timings; NaN marks one unknown), NaN if none is finite."""
    values = np.asarray(seconds, dtype=float)
    known = values[np.isfinite(values)]
    return float(np.median(known)) if len(known) else math.nan


@dataclass(frozen=True)
class Evaluation:
    """One proxy on one task sample.

    Attributes
    ----------
    proxy : display label; task : task id; seed : sample and batch seed; batch_size : images in the batch.
    index, accuracy : [B] benchmark indices and true accuracies of the networks.
    scores : [B] proxy scores (NaN where the proxy failed); seconds : [B] (NaN where unknown).
    errors : first error message per distinct failure reason (at most 3).
    """

    proxy: str
    task: str
    seed: int
    batch_size: int
    index: np.ndarray
    accuracy: np.ndarray
    scores: np.ndarray
    seconds: np.ndarray
    errors: tuple[str, ...]

    @property
    def failed(self) -> int:
        """Networks without a finite score."""
        return int((~np.isfinite(self.scores)).sum())

    @property
    def kendall_tau(self) -> float:
        """Kendall tau-b over the finite scores (NaN with fewer than two)."""
        s, a = self._finite()
        return float(sps.kendalltau(s, a).statistic) if len(s) > 1 else math.nan

    @property
    def spearman_rho(self) -> float:
        """Spearman rho over the finite scores (NaN with fewer than two)."""
        s, a = self._finite()
        return float(sps.spearmanr(s, a).statistic) if len(s) > 1 else math.nan

    @property
    def top_precision(self) -> float:
        """Fraction of the proxy's top 10% (ceil, at least 1) that is in the true top 10%.

        The true top holds every network at least as accurate as the k-th best; ties in the
        proxy's scores are broken by position (benchmark index order).
        """
        s, a = self._finite()
        if not len(s):
            return math.nan
        k = max(1, math.ceil(TOP_FRACTION * len(s)))
        threshold = np.sort(a)[::-1][k - 1]
        chosen = np.argsort(-s, kind="stable")[:k]
        return float((a[chosen] >= threshold).mean())

    @property
    def median_seconds(self) -> float:
        """Median seconds per network over the networks with a timing (NaN if none)."""
        return median_known(self.seconds)

    def _finite(self) -> tuple[np.ndarray, np.ndarray]:
        mask = np.isfinite(self.scores)
        return self.scores[mask], self.accuracy[mask]

    def row(self) -> dict[str, Any]:
        """The table row (`eznas.tables.evaluations.COLUMNS`)."""
        return {"task": self.task, "proxy": self.proxy, "networks": len(self.scores), "failed": self.failed,
                "kendall_tau": self.kendall_tau, "spearman_rho": self.spearman_rho,
                "top10_precision": self.top_precision, "seconds_per_net": self.median_seconds}


def _collect(spec: ProxySpec, cache: ScoreCache, records: Sequence[dict[str, Any]], run: _Run,
             lost: dict[int, str]) -> Evaluation:
    """Turn cached entries into an `Evaluation` (set-level baselines are combined over the set).

    ``lost`` holds the networks whose job failed outright: they count as failures, uncached.
    """
    entries = [cache.get(r["index"]) or {"value": None, "seconds": None, "error": lost[r["index"]]}
               for r in records]
    scores = np.full(len(records), math.nan)
    ok = [i for i, e in enumerate(entries) if e["value"] is not None]
    if ok:
        values = [entries[i]["value"] for i in ok]
        if spec.kind == "baseline":
            values = proxies.get(spec.ref).score_set(values)
        scores[ok] = values
    seconds = np.array([math.nan if e["seconds"] is None else e["seconds"] for e in entries], dtype=float)
    errors = tuple(dict.fromkeys(e["error"] for e in entries if e["error"]))[:3]
    return Evaluation(spec.label, run.task.name, run.seed, run.batch_size, np.array([r["index"] for r in records]),
                      np.array([r["accuracy"] for r in records], dtype=float), scores, seconds, errors)


def probe_config(seed: int, batch_size: int, run: RunInfo | None) -> ProbeSettings:
    """Probe settings of expressions: the run's (if any) or the defaults, on the shared batch and net seed."""
    cfg = run.config.probe if run is not None else ProbeSettings()
    return replace(cfg, batch_size=batch_size, batch_seed=seed, net_seed=NET_SEED, input_kind="real")


def sample_records(task: str | Task, n: int | None, seed: int, data_dir: str | os.PathLike | None = None,
                   run: RunInfo | None = None) -> list[dict[str, Any]]:
    """The evaluated networks: a seeded sample of ``n`` (every network if None), in index order, leaving out
    the networks evolution ``run`` used on ``task``'s space (`eznas.run.used_indices`)."""
    exclude = used_indices(run.used, parse_task(task).name) if run is not None else None
    if n is None:
        records = [r for r in benchmarks.load_task(task, data_dir) if r["index"] not in (exclude or set())]
    else:
        records = benchmarks.sample(task, n, seed, data_dir, exclude=exclude)
    if not records:
        raise EznasError(f"no networks of {parse_task(task).name} left to evaluate after excluding the run's networks")
    return sorted(records, key=lambda r: r["index"])


def evaluate(proxy_args: Sequence[str], task: str, n: int | None = 200, seed: int = 0,
             parallel: Parallel = Parallel(),
             exclude_run: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True,
             batch_size: int = BATCH_SIZE, scores_dir: str | os.PathLike | None = None) -> list[Evaluation]:
    """Score every proxy of ``proxy_args`` on the same networks and batch of ``task``.

    Parameters
    ----------
    proxy_args : PROXY arguments (baseline names, ``.py`` paths, expressions); resolved first,
        so a bad one fails before any work.
    task : task id; n : networks to sample (None = all); seed : sample and batch seed.
    parallel : where the network jobs run (backend, workers, retries, timeout).
    exclude_run : an evolution run (its directory, or the ``.json`` record of a proxy it produced:
        `eznas.report.read_run`) whose networks are left out (its probe settings then also apply
        to expressions).
    data_dir, cache_dir : benchmark data and cache root (default: as `eznas.cache.StatsCache`).
    progress : show progress bars.
    batch_size : images in the shared batch (64 in the protocol; smaller only for quick checks).
    scores_dir : the per-network score cache (default ``<cache root>/scores``); a directory of
        scores computed elsewhere (e.g. committed beside a results table) makes a rerun read them.

    Returns
    -------
    One `Evaluation` per distinct proxy, in the order given.
    """
    t = parse_task(task)
    if n is not None and n < 2:
        raise EznasError(f"--n {n}: evaluate at least 2 networks")
    parallel.validate()
    if not 2 <= batch_size <= 5000:
        raise EznasError(f"batch size {batch_size}: use 2..5000 images")
    run = read_run(exclude_run, data_dir) if exclude_run is not None else None
    probe_cfg = probe_config(seed, batch_size, run)
    resolved = [resolve(p, probe_cfg) for p in proxy_args]
    specs = list({json.dumps(s.identity, sort_keys=True): s for s in resolved}.values())  # drop repeats
    records = sample_records(t, n, seed, data_dir, run)
    return evaluate_records(specs, t, records, seed, parallel, data_dir, cache_dir, progress, batch_size, probe_cfg,
                            scores_dir)


def evaluate_records(specs: Sequence[ProxySpec], task: str | Task, records: Sequence[dict[str, Any]], seed: int = 0,
                     parallel: Parallel = Parallel(), data_dir: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None, progress: bool = True,
                     batch_size: int = BATCH_SIZE, probe_cfg: ProbeSettings | None = None,
                     scores_dir: str | os.PathLike | None = None) -> list[Evaluation]:
    """Score resolved proxies on given benchmark records through the score cache (the core of `evaluate`).

    ``seed`` is the batch seed (the protocol's shared batch ``inputs.batch(task, batch_size, seed)``);
    ``probe_cfg`` must be the one the expression specs were resolved with (default
    ``probe_config(seed, batch_size, None)``, as `evaluate` without ``exclude_run``). Networks
    already in the cache are not scored again. Returns one `Evaluation` per spec, over ``records``
    in the order given.
    """
    t = parse_task(task)
    probe_cfg = probe_cfg or probe_config(seed, batch_size, None)
    root = Path(cache_dir) if cache_dir is not None else StatsCache().root
    kind = device_kind()
    run = _Run(t, seed, batch_size, parallel, kind, None if data_dir is None else str(data_dir), root, probe_cfg,
               progress)
    scores = Path(scores_dir) if scores_dir is not None else root / SCORES_DIR
    caches = [ScoreCache(scores, s, t.name, NET_SEED, seed, batch_size, kind) for s in specs]
    if any(c.get(r["index"]) is None for c in caches for r in records):
        inputs.batch(t, batch_size, seed, "real", run.data_dir)  # bad input data: one error before any job
    net_level = [i for i, s in enumerate(specs) if s.kind != "expression"]
    lost = _score_networks(run, [specs[i] for i in net_level], [caches[i] for i in net_level], records)
    for spec, cache in zip(specs, caches):
        if spec.kind == "expression":
            lost.update(_score_expression(run, spec, cache, records))
    if records and all(r["index"] in lost for r in records):
        raise EznasError(f"{t.name}: every one of the {len(records)} networks failed ({next(iter(lost.values()))}); "
                         "fix the cause (see the warnings above) and run again: what was scored is kept")
    return [_collect(s, c, records, run, lost) for s, c in zip(specs, caches)]


def protocol_spec(text: str, seed: int = 0) -> ProxySpec:
    """Resolve a PROXY for the protocol with batch seed ``seed`` (as `evaluate` does without ``exclude_run``)."""
    return resolve(text, probe_config(seed, BATCH_SIZE, None))


def score_records(proxy: str | ProxySpec, task: str | Task, records: Sequence[dict[str, Any]], seed: int = 0,
                  parallel: Parallel = Parallel(), data_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, progress: bool = True,
                  scores_dir: str | os.PathLike | None = None) -> Evaluation:
    """One proxy on benchmark records, on the protocol: its `Evaluation` (``scores`` NaN where it failed;
    ``seconds`` each network's scoring time as cached, whether computed now or found in the cache).

    The protocol is `evaluate`'s: net seed 0, the batch of `BATCH_SIZE` images drawn with ``seed``,
    default probe settings for an expression; the per-network scores are read from and written to
    the same score cache, so ``seed=0`` shares them with ``eznas evaluate --seed 0``. A set-level
    baseline (``az_nas``) is combined over ``records``.
    """
    spec = proxy if isinstance(proxy, ProxySpec) else protocol_spec(proxy, seed)
    (result,) = evaluate_records([spec], task, records, seed, parallel, data_dir, cache_dir, progress, scores_dir=scores_dir)
    return result


def sample_size(task: str, n: int | None, whole_n: int | None, space_n: Mapping[str, int] | None = None) -> int | None:
    """Networks to sample of ``task`` in a table: ``space_n[space]`` where given, else ``n`` for an NB201 dataset
    and ``whole_n`` for a task of another space (None: every network)."""
    space = parse_task(task).space
    return (space_n or {}).get(space, n if space == "nb201" else whole_n)


def evaluate_tasks(proxy_args: Sequence[str], tasks: Sequence[str], n: int | None, whole_n: int | None = None,
                   seed: int = 0, parallel: Parallel = Parallel(), exclude_run: str | None = None,
                   exclude_spaces: Sequence[str] | None = None, data_dir: str | None = None,
                   cache_dir: str | None = None, scores_dir: str | None = None,
                   space_n: Mapping[str, int] | None = None) -> Iterator[tuple[str, dict[str, list[Evaluation]]]]:
    """`evaluate` on every task in turn, printing the time of each; yields the task and the results so
    far (a table script rewrites its tables as they grow).

    ``n`` networks are sampled per NB201 dataset, ``whole_n`` per task of the other spaces (None:
    every network), ``space_n[space]`` per task of that space where given; ``exclude_run`` leaves out
    that evolution run's networks (its pools and validation networks) on ``exclude_spaces`` (None: every space).
    """
    space_n = dict(space_n or {})
    unknown = sorted(set(space_n) - {parse_task(task).space for task in tasks})
    if unknown:
        raise EznasError(f"--space-n {unknown[0]}={space_n[unknown[0]]}: no task of space {unknown[0]!r} among "
                         f"{', '.join(tasks)}")
    results: dict[str, list[Evaluation]] = {}
    for task in tasks:
        space = parse_task(task).space
        start = time.perf_counter()
        count = sample_size(task, n, whole_n, space_n)
        results[task] = evaluate(proxy_args, task, n=count, seed=seed, parallel=parallel,
                                 exclude_run=exclude_run if exclude_spaces is None or space in exclude_spaces else None,
                                 data_dir=data_dir, cache_dir=cache_dir, scores_dir=scores_dir)
        print(f"{task}: {len(results[task][0].scores)} networks in {time.perf_counter() - start:.0f} s", flush=True)
        yield task, results
