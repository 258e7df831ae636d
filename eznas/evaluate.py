"""Evaluate any proxy on a benchmark sample: Kendall tau-b, Spearman rho, top-10% precision, cost.

A PROXY is one of

- a baseline name (`eznas.proxies.names`), scored on each network (set-level baselines such
  as ``az_nas`` are combined over the evaluated set);
- a path to a ``.py`` file defining ``score(net, inputs, targets) -> float`` (an exported
  proxy, or any hand-written one), loaded with importlib from its path;
- a GP expression string (`eznas.gp.parse`), scored by the engine on cached statistics
  (`eznas.pool.load_pool`, `eznas.fitness.Evaluator`);
- the ``.json`` record that ``eznas export`` writes beside a proxy: its expression, scored as
  an expression string (the same scores and cache), labelled with the file name.

Protocol: every proxy sees the same networks (the task's benchmark architectures built with
net seed 0) and the same batch (``inputs.batch(task, 64, seed)``); the sample is
``benchmarks.sample(task, n, seed)`` (or every network), optionally without the networks an
evolution run used (``--exclude-run``, `eznas.report.used_indices`). A proxy that raises or
returns a non-finite score on a network gets NaN there; the failures are counted and the
correlations use the finite scores. Seconds per network time the proxy call alone (the
network is built and the batch drawn outside the timer); for an expression, the probe that
computes the statistics, measured when this command computes them (statistics found in the
cache from elsewhere have no timing).

Per-network results are cached as JSON, one file per (proxy identity, task, seeds) under
``<cache root>/scores/`` (or ``--scores-dir``): the identity is the baseline name and version,
the sha256 of a proxy file, or the expression with its probe settings and the probe version.
Files are written atomically every few seconds and at the end, so repeated and compared
evaluations are cheap and a killed run resumes. A score directory copied to another machine
serves there as it is (no statistics are needed for the networks it holds).
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats as sps
from tqdm import tqdm

from eznas import benchmarks, inputs, proxies
from eznas import gp as programs
from eznas.cache import StatsCache
from eznas.errors import EznasError
from eznas.export import record_expression
from eznas.fitness import Evaluator
from eznas.options import add_cache_dirs, add_data_dir
from eznas.parallel import Failed, run_tasks
from eznas.pool import load_pool, network_key
from eznas.probe import PROBE_VERSION, ProbeSettings, probe
from eznas.report import RunInfo, read_run, used_indices
from eznas.spaces import build_network
from eznas.tasks import Task, parse_task

BATCH_SIZE = 64  # images in the batch every proxy sees (the protocol's default)
NET_SEED = 0  # initialisation seed of every evaluated network
TOP_FRACTION = 0.1  # precision is measured on the top 10% of networks
SCORES_DIR = "scores"  # score-cache subdirectory of the cache root
SCORES_VERSION = 1  # bump when the protocol changes the per-network scores
FLUSH_SECONDS = 2.0  # the score cache is written at least this often while scoring
COLUMNS = ("task", "proxy", "networks", "failed", "kendall_tau", "spearman_rho", "top10_precision", "seconds_per_net")


# ----------------------------------------------------------------------------- proxies

@dataclass(frozen=True)
class ProxySpec:
    """A resolved PROXY argument.

    Attributes
    ----------
    text : the argument as given.
    kind : ``"baseline"``, ``"file"`` or ``"expression"``.
    label : display name (baseline name, file name, infix expression).
    ref : what a worker resolves: the baseline name, the absolute file path, the prefix expression.
    identity : JSON-able cache identity (name and version, file sha256, or expression with its probe
        settings and the probe version).
    """

    text: str
    kind: str
    label: str
    ref: str
    identity: dict[str, Any]


def resolve(text: str, probe_cfg: ProbeSettings | None = None) -> ProxySpec:
    """Resolve a PROXY argument; `EznasError` with one line if it is none of the four kinds.

    ``probe_cfg`` (default: `ProbeSettings` defaults) enters the identity of an expression.
    """
    text = text.strip()
    if text in proxies.names():
        return ProxySpec(text, "baseline", text, text, {"baseline": text, "version": proxies.get(text).version})
    path = Path(text)
    if text.endswith(".json"):
        tree = programs.parse(record_expression(path, "proxy record"))
        return _expression_spec(text, tree, path.name, probe_cfg)
    if text.endswith(".py") or path.is_file():
        if not path.is_file():
            raise EznasError(f"proxy file {text} not found; "
                             f"give an existing .py file defining score(net, inputs, targets)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        load_score_file(str(path.resolve()), digest)  # fail here, once, not in every worker
        return ProxySpec(text, "file", path.name, str(path.resolve()), {"file_sha256": digest})
    if "(" not in text and text not in programs.primitive_set().mapping:
        raise EznasError(f"unknown proxy {text!r}: not a baseline ({', '.join(proxies.names())}), "
                         f"not a .py file and not a GP expression")
    try:
        tree = programs.parse(text)
    except EznasError as e:
        raise EznasError(f"proxy {text!r} is neither a baseline nor a file, and not a valid expression: {e}") from None
    return _expression_spec(text, tree, programs.infix(tree), probe_cfg)


def _expression_spec(text: str, tree: Any, label: str, probe_cfg: ProbeSettings | None) -> ProxySpec:
    cfg = probe_cfg or ProbeSettings()
    return ProxySpec(text, "expression", label, str(tree),
                     {"expression": str(tree), "probe": cfg.__dict__, "probe_version": PROBE_VERSION})


@functools.lru_cache(maxsize=32)
def load_score_file(path: str, digest: str) -> Callable[..., Any]:
    """The ``score`` function of the proxy file at ``path`` (``digest`` keys the per-process cache)."""
    name = f"eznas_proxy_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EznasError(f"{path}: not loadable as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered, as for an import (dataclasses and pickling look it up)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # any failure of user code at import time is the user's to fix
        del sys.modules[name]
        message = " ".join(str(e).split())
        raise EznasError(f"{path}: importing the proxy file failed ({type(e).__name__}: {message}); "
                         f"fix the file") from None
    score = getattr(module, "score", None)
    if not callable(score):
        raise EznasError(f"{path}: defines no function score(net, inputs, targets); "
                         f"write one, or export a proxy with 'eznas export RUN -o FILE'")
    return score


def _scorer(spec: ProxySpec) -> Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], Any]:
    """The per-network callable of a baseline or file proxy (file proxies get a copy of the net)."""
    if spec.kind == "baseline":
        return proxies.get(spec.ref)
    func = load_score_file(spec.ref, spec.identity["file_sha256"])
    return lambda net, x, y: func(copy.deepcopy(net), x, y)


# ----------------------------------------------------------------------------- score cache

class ScoreCache:
    """Per-network results of one proxy on one task and batch: one JSON file, written atomically.

    Entries map the benchmark index to ``{"value": float | dict | None, "seconds": float | None,
    "error": str | None}``; ``value`` None means the proxy failed on that network.
    """

    def __init__(self, directory: Path, spec: ProxySpec, task: str, seed: int, batch_size: int) -> None:
        header = {"proxy": spec.identity, "task": task, "net_seed": NET_SEED,
                  "batch": {"n": batch_size, "seed": seed, "kind": "real"}, "version": SCORES_VERSION}
        key = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        self.path = directory / f"{key}.json"
        self.header = {**header, "label": spec.label}
        self.entries: dict[str, dict[str, Any]] = self._read()
        self._dirty = False
        self._written = time.monotonic()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text())
            entries = doc["entries"]
            if not isinstance(entries, dict):
                raise TypeError("entries is not an object")
            return entries
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as e:
            warnings.warn(f"score cache {self.path} is unreadable ({e}); recomputing its scores", stacklevel=3)
            return {}

    def get(self, index: int) -> dict[str, Any] | None:
        """The cached entry of a network, or None."""
        return self.entries.get(str(index))

    def put(self, index: int, entry: dict[str, Any]) -> None:
        """Record an entry; the file is rewritten if the last write is older than `FLUSH_SECONDS`."""
        self.entries[str(index)] = entry
        self._dirty = True
        if time.monotonic() - self._written > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the file now if anything changed (temporary file + ``os.replace``)."""
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({**self.header, "entries": self.entries}, f)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._dirty = False
        self._written = time.monotonic()


# ----------------------------------------------------------------------------- scoring

def _clean(value: Any) -> tuple[Any, str | None]:
    """A proxy's return value as JSON-able data, or (None, reason) when it is not a finite number."""
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}, None
    value = float(value)
    return (value, None) if math.isfinite(value) else (None, f"non-finite score {value}")


def score_network(task: str, arch: Any, seed: int, batch_size: int, specs: Sequence[ProxySpec],
                  data_dir: str | None) -> list[dict[str, Any]]:
    """Worker: build one network and its batch, run each baseline/file proxy on it, time each call."""
    x, y = inputs.batch(task, batch_size, seed, "real", data_dir)
    net = build_network(task, arch, seed=NET_SEED)
    results = []
    for spec in specs:
        func = _scorer(spec)
        start = time.perf_counter()
        try:
            value, error = _clean(func(net, x, y))
        except Exception as e:  # a proxy failing on one network is recorded, not fatal
            value, error = None, f"{type(e).__name__}: {' '.join(str(e).split())}"
        results.append({"value": value, "seconds": time.perf_counter() - start, "error": error})
    return results


def probe_network(task: str, arch: Any, cfg: ProbeSettings, cache_root: str, data_dir: str | None) -> float:
    """Worker: probe one network into the statistics cache; returns the probe's seconds."""
    x, y = inputs.batch(task, cfg.batch_size, cfg.batch_seed, cfg.input_kind, data_dir)
    net = build_network(task, arch, seed=cfg.net_seed)
    start = time.perf_counter()
    stats = probe(net, x, y, cfg)
    seconds = time.perf_counter() - start
    StatsCache(cache_root).save(network_key(task, arch, cfg), stats, {"task": task, "arch": arch})
    return seconds


@dataclass(frozen=True)
class _Run:
    """Where and how one evaluation runs."""

    task: Task
    seed: int
    batch_size: int
    jobs: int
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
    jobs = [(score_network, (run.task.name, r["arch"], run.seed, run.batch_size, [specs[i] for i in missing],
                             run.data_dir)) for r, missing in todo]
    lost = {}
    bar = tqdm(total=len(todo), desc=f"scoring {run.task.name}", unit="net", disable=not run.progress,
               dynamic_ncols=True)
    try:
        for (r, missing), results in zip(todo, run_tasks(jobs, n_jobs=run.jobs)):
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
    """Fill the cache of an expression: probe what the statistics cache lacks (timed), then run the engine.

    Returns the networks whose statistics failed (left out of the pool), with the reason; those
    are not cached, so the next run tries them again.
    """
    if all(cache.get(r["index"]) is not None for r in records):
        return {}
    stats_cache = StatsCache(run.cache_root)
    cfg = run.probe_cfg
    todo = [r for r in records if network_key(run.task.name, r["arch"], cfg) not in stats_cache]
    jobs = [(probe_network, (run.task.name, r["arch"], cfg, str(run.cache_root), run.data_dir)) for r in todo]
    seconds = {}
    bar = tqdm(total=len(todo), desc=f"probing {run.task.name}", unit="net", disable=not run.progress or not todo,
               dynamic_ncols=True)
    try:
        for r, s in zip(todo, run_tasks(jobs, n_jobs=run.jobs)):
            if not isinstance(s, Failed):  # a failed probe is tried again by load_pool, untimed
                seconds[r["index"]] = s
            bar.update(1)
    finally:
        bar.close()
    batch = load_pool(run.task.name, records, cfg, stats_cache, run.jobs, data_dir=run.data_dir, progress=False)
    kept = set(batch.index.tolist())
    try:
        values = Evaluator(batch).scores(programs.parse(spec.ref)).double().tolist()
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
        """The table row (`COLUMNS`)."""
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


def _probe_config(seed: int, batch_size: int, run: RunInfo | None) -> ProbeSettings:
    """Probe settings of expressions: the run's (if any) or the defaults, on the shared batch and net seed."""
    cfg = run.config.probe if run is not None else ProbeSettings()
    return replace(cfg, batch_size=batch_size, batch_seed=seed, net_seed=NET_SEED, input_kind="real")


def sample_records(task: str | Task, n: int | None, seed: int, data_dir: str | os.PathLike | None = None,
                   exclude: set[int] | None = None) -> list[dict[str, Any]]:
    """The evaluated networks: a seeded sample of ``n`` (every network if None), in index order."""
    if n is None:
        records = [r for r in benchmarks.load_task(task, data_dir) if r["index"] not in (exclude or set())]
    else:
        records = benchmarks.sample(task, n, seed, data_dir, exclude=exclude)
    if not records:
        raise EznasError(f"no networks of {parse_task(task).name} left to evaluate after excluding the run's networks")
    return sorted(records, key=lambda r: r["index"])


def evaluate(proxy_args: Sequence[str], task: str, n: int | None = 200, seed: int = 0, jobs: int = 1,
             exclude_run: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None, progress: bool = True,
             batch_size: int = BATCH_SIZE, scores_dir: str | os.PathLike | None = None) -> list[Evaluation]:
    """Score every proxy of ``proxy_args`` on the same networks and batch of ``task``.

    Parameters
    ----------
    proxy_args : PROXY arguments (baseline names, ``.py`` paths, expressions); resolved first,
        so a bad one fails before any work.
    task : task id; n : networks to sample (None = all); seed : sample and batch seed.
    jobs : parallel workers over networks; exclude_run : an evolution run (its directory, or the
        ``.json`` record of a proxy it produced: `eznas.report.read_run`) whose networks are left
        out (its probe settings then also apply to expressions).
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
    if jobs < 1:
        raise EznasError(f"--jobs {jobs}: use 1 or more workers")
    if not 2 <= batch_size <= 5000:
        raise EznasError(f"batch size {batch_size}: use 2..5000 images")
    run = read_run(exclude_run, data_dir) if exclude_run is not None else None
    probe_cfg = _probe_config(seed, batch_size, run)
    resolved = [resolve(p, probe_cfg) for p in proxy_args]
    specs = list({json.dumps(s.identity, sort_keys=True): s for s in resolved}.values())  # drop repeats
    exclude = used_indices(run.pools, t.name) if run is not None else None
    records = sample_records(t, n, seed, data_dir, exclude)
    return evaluate_records(specs, t, records, seed, jobs, data_dir, cache_dir, progress, batch_size, probe_cfg,
                            scores_dir)


def evaluate_records(specs: Sequence[ProxySpec], task: str | Task, records: Sequence[dict[str, Any]], seed: int = 0,
                     jobs: int = 1, data_dir: str | os.PathLike | None = None,
                     cache_dir: str | os.PathLike | None = None, progress: bool = True,
                     batch_size: int = BATCH_SIZE, probe_cfg: ProbeSettings | None = None,
                     scores_dir: str | os.PathLike | None = None) -> list[Evaluation]:
    """Score resolved proxies on given benchmark records through the score cache (the core of `evaluate`).

    ``seed`` is the batch seed (the protocol's shared batch ``inputs.batch(task, batch_size, seed)``);
    ``probe_cfg`` must be the one the expression specs were resolved with (default
    ``_probe_config(seed, batch_size, None)``, as `evaluate` without ``exclude_run``). Networks
    already in the cache are not scored again. Returns one `Evaluation` per spec, over ``records``
    in the order given.
    """
    t = parse_task(task)
    probe_cfg = probe_cfg or _probe_config(seed, batch_size, None)
    root = Path(cache_dir) if cache_dir is not None else StatsCache().root
    run = _Run(t, seed, batch_size, jobs, None if data_dir is None else str(data_dir), root, probe_cfg, progress)
    scores = Path(scores_dir) if scores_dir is not None else root / SCORES_DIR
    caches = [ScoreCache(scores, s, t.name, seed, batch_size) for s in specs]
    net_level = [i for i, s in enumerate(specs) if s.kind != "expression"]
    lost = _score_networks(run, [specs[i] for i in net_level], [caches[i] for i in net_level], records)
    for spec, cache in zip(specs, caches):
        if spec.kind == "expression":
            lost.update(_score_expression(run, spec, cache, records))
    return [_collect(s, c, records, run, lost) for s, c in zip(specs, caches)]


def protocol_spec(text: str, seed: int = 0) -> ProxySpec:
    """Resolve a PROXY for the protocol with batch seed ``seed`` (as `evaluate` does without ``exclude_run``)."""
    return resolve(text, _probe_config(seed, BATCH_SIZE, None))


def score_records(proxy: str | ProxySpec, task: str | Task, records: Sequence[dict[str, Any]], seed: int = 0,
                  jobs: int = 1, data_dir: str | os.PathLike | None = None,
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
    (result,) = evaluate_records([spec], task, records, seed, jobs, data_dir, cache_dir, progress, scores_dir=scores_dir)
    return result


# ----------------------------------------------------------------------------- tables

def format_number(value: Any, digits: int = 4) -> str:
    """A table cell: a float with ``digits`` decimals, "–" for NaN; anything else as ``str``."""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(evaluations: Sequence[Evaluation]) -> str:
    """A Markdown table, one row per evaluation (`COLUMNS`)."""
    head = ("task", "proxy", "networks", "failed", "Kendall tau-b", "Spearman rho", "top-10% precision", "s / network")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in evaluations:
        row = e.row()
        cells = [row["task"], f"`{row['proxy']}`", row["networks"], row["failed"], format_number(row["kendall_tau"]),
                 format_number(row["spearman_rho"]), format_number(row["top10_precision"], 3), format_number(row["seconds_per_net"], 3)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def csv_table(evaluations: Sequence[Evaluation]) -> str:
    """The same rows as CSV text (full precision)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in evaluations:
        writer.writerow(e.row())
    return buf.getvalue()


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; an unwritable path is an `EznasError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise EznasError(f"cannot write {path}: {e.strerror}; choose another --out prefix") from None


def summary(e: Evaluation) -> str:
    """A few human lines about one evaluation."""
    lines = [f"{e.task}, {e.proxy}: {len(e.scores)} networks (seed {e.seed}, batch of {e.batch_size}), "
             f"{e.failed} failed",
             f"  Kendall tau-b {format_number(e.kendall_tau)}   Spearman rho {format_number(e.spearman_rho)}   "
             f"top-10% precision {format_number(e.top_precision, 3)}   median {format_number(e.median_seconds, 3)} s/network"]
    lines += [f"  failure: {msg}" for msg in e.errors]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to the ``eznas`` parser."""
    p = subparsers.add_parser(
        "evaluate", help="score a proxy (baseline, exported .py file or expression) on a benchmark sample",
        description="Kendall tau-b, Spearman rho, top-10%% precision and median seconds per network of PROXY on a "
                    "seeded sample of TASK. PROXY is a baseline name (" + ", ".join(proxies.names()) + "), a .py "
                    "file defining score(net, inputs, targets), or a GP expression. Every proxy sees the same "
                    "networks (net seed 0) and the same batch of 64 images (seed --seed).")
    p.add_argument("proxy", metavar="PROXY", help="baseline name, path to a .py proxy file, or expression string")
    p.add_argument("--task", required=True, help="task id, e.g. nb201:cifar10 or nds:DARTS_in")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--n", type=int, default=200, help="networks to sample (default 200)")
    g.add_argument("--all", action="store_true", help="evaluate every network of the task")
    p.add_argument("--seed", type=int, default=0, help="sample and batch seed (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="parallel workers over networks (default 1)")
    p.add_argument("--exclude-run", metavar="RUN", help="leave out the networks evolution run RUN used (its directory, "
                                                        "or the .json record of a proxy it produced)")
    p.add_argument("--compare", metavar="P1,P2,...", help="also score these proxies on the same networks and batch")
    p.add_argument("--out", metavar="PREFIX", help="write PREFIX.md and PREFIX.csv (default with --compare: "
                                                   "compare_<task>)")
    add_data_dir(p)
    add_cache_dirs(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``eznas evaluate``; returns the exit status."""
    proxy_args = [args.proxy] + [p for p in (args.compare or "").split(",") if p.strip()]
    results = evaluate(proxy_args, args.task, None if args.all else args.n, args.seed, args.jobs,
                       args.exclude_run, args.data_dir, args.cache_dir, scores_dir=args.scores_dir)
    for e in results:
        print(summary(e))
    prefix = args.out or (f"compare_{parse_task(args.task).name.replace(':', '_')}" if args.compare else None)
    if prefix:
        md, csv_path = Path(f"{prefix}.md"), Path(f"{prefix}.csv")
        write_text(md, markdown_table(results) + "\n")
        write_text(csv_path, csv_table(results))
        print(f"wrote {md} and {csv_path}")
    return 0
