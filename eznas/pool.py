"""Statistics pools: a task's sampled networks -> cached `NetworkStats` -> one `StatsBatch`.

Each network is built (seeded), fed one minibatch, probed, and its statistics stored in the
cache under a key of everything that changes the numbers; later runs reload instead of
recomputing. A caller may ask for some statistics only (``needs``; a run asks for those its
programs may read): the probe then computes only those (no Hessian-vector product unless a
Hessian statistic is asked for). The key does not depend on ``needs``: a cached entry that holds
every statistic asked for is reused whatever else it holds, and one that lacks some is probed
again for what it held and what is asked, and overwritten, so entries only grow. Missing networks
are computed on parallel workers (`eznas.parallel.run_tasks`) with a progress bar; a network whose
statistics keep failing is left out of the pool.

Device policy: each job probes on its own device (`eznas.jobs.job_device`) of the kind its caller
sees (`eznas.jobs.device_kind`), and the statistics are stored as CPU float32 either way. GPU
arithmetic rounds differently, so statistics computed on a non-CPU device carry the device kind
in their cache key and metadata (``"device": "cuda"``): CPU keys and files stay as they were, and
GPU statistics never mix with CPU ones in a pool.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from eznas import inputs
from eznas.cache import StatsCache, stats_key
from eznas.errors import EznasError
from eznas.jobs import device_kind, job_device
from eznas.netjob import network_and_batch
from eznas.parallel import Failed, Parallel, run_tasks
from eznas.probe import LAYER_SCALARS, PROBE_VERSION, SIZE_STATS, NetworkStats, ProbeSettings, probe, resolve_needs
from eznas.statsbatch import StatsBatch, stack
from eznas.tasks import Task, parse_task

log = logging.getLogger(__name__)


def network_key(task: str | Task, arch: Any, cfg: ProbeSettings, kind: str = "cpu") -> str:
    """Cache key of one network's statistics: the one place that says what changes them
    (``kind``: the device kind that computed them, in the key unless it is the CPU)."""
    return stats_key(task=parse_task(task).name, arch=arch, net_seed=cfg.net_seed,
                     batch={"n": cfg.batch_size, "seed": cfg.batch_seed, "kind": cfg.input_kind},
                     probe=cfg.cache_fields(), version=PROBE_VERSION, **_device(kind))


def network_meta(task: str | Task, arch: Any, kind: str = "cpu") -> dict[str, Any]:
    """The metadata stored with one network's statistics (the device kind unless it is the CPU)."""
    return {"task": parse_task(task).name, "arch": arch, **_device(kind)}


def _device(kind: str) -> dict[str, str]:
    return {} if kind == "cpu" else {"device": kind}


def stat_shapes(cfg: ProbeSettings) -> dict[str, tuple[int, ...]]:
    """The shape of each per-layer statistic after its layer axis, as the probe makes it with ``cfg``."""
    r, c, n, f = cfg.weight_rows, cfg.weight_cols, cfg.batch_size, cfg.features
    return {"W": (r, c), "dW": (r, c), "H": (r, c), "A": (n, f), "G": (n, f), "KA": (n, n), "KG": (n, n), "KS": (n, n),
            **{name: () for name in LAYER_SCALARS}}


def compute_stats(task: str | Task, arch: Any, cfg: ProbeSettings, data_dir: str | os.PathLike | None = None,
                  device: str = "cpu", needs: Iterable[str] | None = None) -> NetworkStats:
    """Build the network, draw its minibatch and probe it on ``device`` for ``needs`` (None: every
    statistic; no cache)."""
    data = None if data_dir is None else str(data_dir)
    net, x, y = network_and_batch(task, arch, cfg.net_seed, cfg.batch_size, cfg.batch_seed, cfg.input_kind, data,
                                  device)
    return probe(net, x, y, cfg, needs)


def _fill_one(task: Task, arch: Any, cfg: ProbeSettings, cache_root: str, data_dir: str | None, kind: str,
              needs: frozenset[str]) -> float:
    """Worker: probe one network for ``needs`` into the cache on this job's device of ``kind``; returns
    the probe's seconds."""
    device = job_device(kind)
    net, x, y = network_and_batch(task, arch, cfg.net_seed, cfg.batch_size, cfg.batch_seed, cfg.input_kind, data_dir,
                                  device)
    start = time.perf_counter()
    stats = probe(net, x, y, cfg, needs)
    seconds = time.perf_counter() - start
    StatsCache(cache_root).save(network_key(task, arch, cfg, kind), stats, network_meta(task, arch, kind))
    return seconds


@dataclass(frozen=True)
class Filled:
    """What `fill_cache` did: probe seconds of each network computed now, and the networks that failed."""

    seconds: dict[int, float]  # benchmark index -> seconds of its probe call
    failed: dict[int, str]  # benchmark index -> the last attempt's error


def fill_cache(
    task: str | Task, records: Sequence[dict[str, Any]], cfg: ProbeSettings, cache: StatsCache,
    parallel: Parallel = Parallel(), data_dir: str | os.PathLike | None = None, progress: bool = True,
    needs: Iterable[str] | None = None,
) -> Filled:
    """Compute and cache the statistics ``needs`` (None: every one) of every record whose cache
    entry lacks some of them, on the device kind this process sees (`eznas.jobs.device_kind`).
    A record with an entry is probed for what it holds as well, and its entry overwritten.

    A network whose job fails on all ``parallel.retries + 1`` attempts (raises, kills its worker,
    runs past ``parallel.timeout`` seconds) is not cached, and a warning names it:
    ``nb201:cifar10 #123 left out after 3 attempts: <error>``.
    """
    t = parse_task(task)  # jobs get the parsed task: a user space's declaration travels with it
    kind, wanted = device_kind(), resolve_needs(needs)
    todo = []
    for r in records:
        probed = _to_probe(wanted, cache.holds(network_key(t, r["arch"], cfg, kind)))
        if probed is not None:
            todo.append((r, probed))
    root, data = str(cache.root.resolve()), None if data_dir is None else str(data_dir)
    jobs = [(_fill_one, (t, r["arch"], cfg, root, data, kind, probed)) for r, probed in todo]
    labels = [f"{t.name} #{r['index']}" for r, _ in todo]
    filled = Filled({}, {})
    if not todo:
        return filled
    inputs.batch(t, cfg.batch_size, cfg.batch_seed, cfg.input_kind, data_dir)  # bad input data: one error, not N
    cache.check_writable()
    bar = tqdm(total=len(todo), desc=f"stats {t.name}", unit="net", disable=not progress, dynamic_ncols=True)
    try:
        results = run_tasks(jobs, parallel, labels=labels)
        for (r, _), label, result in zip(todo, labels, results):
            if isinstance(result, Failed):
                log.warning("%s left out after %d attempts: %s", label, result.attempts, result.error)
                filled.failed[r["index"]] = result.error
            else:
                filled.seconds[r["index"]] = result
            bar.update(1)
    finally:
        bar.close()
    return filled


def _to_probe(wanted: frozenset[str], held: frozenset[str] | None) -> frozenset[str] | None:
    """What to probe so that an entry holding ``held`` (None: no readable entry) holds ``wanted`` too: None
    when it already does, else ``wanted`` and what it held (entries only grow)."""
    if held is not None and wanted <= held:
        return None
    return wanted | (held or frozenset())


def load_pool(
    task: str, records: Sequence[dict[str, Any]], cfg: ProbeSettings, cache: StatsCache,
    parallel: Parallel = Parallel(), data_dir: str | os.PathLike | None = None, progress: bool = True,
    needs: Iterable[str] | None = None,
) -> StatsBatch:
    """The `StatsBatch` of ``records`` of ``task`` holding the statistics ``needs`` (None: every one)
    and the size statistics (`eznas.probe.SIZE_STATS`), computing what the cache lacks first.

    Networks whose statistics failed (see `fill_cache`) are left out: the batch's ``index``
    holds the benchmark indices of the networks kept, in the order of ``records``.
    """
    failed = fill_cache(task, records, cfg, cache, parallel, data_dir, progress, needs).failed
    kept = [r for r in records if r["index"] not in failed]
    kind, wanted = device_kind(), resolve_needs(needs)
    stats = []
    for r in kept:
        key = network_key(task, r["arch"], cfg, kind)
        s = cache.load(key, stat_shapes(cfg))
        probed = _to_probe(wanted, None if s is None else s.statistics)
        if probed is not None:  # damaged (the cache warned), or rewritten since: recompute
            s = compute_stats(task, r["arch"], cfg, data_dir, job_device(kind), probed)
            cache.save(key, s, network_meta(task, r["arch"], kind))
        stats.append(s.only(wanted | SIZE_STATS))
    if not stats:
        raise EznasError(f"{task}: the statistics of all {len(records)} networks failed (see the warnings above)")
    return stack(stats, [r["accuracy"] for r in kept], [task] * len(kept), [r["index"] for r in kept])
