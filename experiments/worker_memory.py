"""Memory of statistics workers: peak RSS of ``--jobs`` worker processes probing a task's largest networks.

    python experiments/worker_memory.py --task nb101:cifar10 --n 4 --jobs 2 [--without-hessian]

The ``--n`` networks of the task with the most parameters are probed by statistics jobs (build +
batch + probe, as `eznas.pool` runs them, the protocol's probe settings, no cache) on ``--jobs``
fresh loky worker processes; with ``--without-hessian``, every statistic but the Hessian ones, as a
run with ``evolution.statistics = ["-H", "-log_h_trace"]`` probes (experiments/transfer.toml).
Each job reports its worker's peak RSS so far; the figure is the sum over workers of their peaks
(and the largest one). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys

from joblib.externals.loky import get_reusable_executor

from eznas import benchmarks
from eznas.jobs import device_kind, job_device
from eznas.parallel import Failed, Parallel, run_tasks
from eznas.pool import compute_stats
from eznas.probe import ALL_STATS, HESSIAN_STATS, ProbeSettings


def probe_peak(task: str, arch: str, data_dir: str | None, kind: str, needs: frozenset[str]) -> tuple[int, int]:
    """Job: probe one network for ``needs`` on this job's device; returns (worker pid, its peak RSS in bytes)."""
    compute_stats(task, arch, ProbeSettings(), data_dir, job_device(kind), needs)
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    """Probe the largest networks on fresh workers and print their peak RSS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="nb101:cifar10")
    parser.add_argument("--n", type=int, default=4, help="networks, the largest by parameter count (default 4)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--without-hessian", action="store_true", help="probe every statistic but the Hessian ones")
    parser.add_argument("--data-dir", default=None, help="benchmark data directory")
    args = parser.parse_args(argv)
    records = sorted(benchmarks.load_task(args.task, args.data_dir), key=lambda r: -r.get("params", 0))[:args.n]
    get_reusable_executor().shutdown(wait=True, kill_workers=True)  # fresh workers: their peaks are these jobs'
    needs = ALL_STATS - HESSIAN_STATS if args.without_hessian else ALL_STATS
    jobs = [(probe_peak, (args.task, r["arch"], args.data_dir, device_kind(), needs)) for r in records]
    peaks: dict[int, int] = {}
    for r, result in zip(records, run_tasks(jobs, Parallel(jobs=args.jobs, retries=0))):
        if isinstance(result, Failed):
            print(f"#{r['index']} failed: {result.error}")
            continue
        pid, peak = result
        peaks[pid] = max(peaks.get(pid, 0), peak)
    total = sum(peaks.values())
    params = [r.get("params") for r in records]
    what = "every statistic but the Hessian ones" if args.without_hessian else "every statistic"
    print(f"{args.task}, {what}: {len(records)} largest networks ({min(params) / 1e6:.1f}-{max(params) / 1e6:.1f} M params) on "
          f"{len(peaks)} workers: peak RSS {total / 2**30:.2f} GiB in all, {max(peaks.values(), default=0) / 2**30:.2f} "
          f"GiB the largest worker")
    print(json.dumps({"task": args.task, "without_hessian": args.without_hessian, "networks": len(records),
                      "params": params, "workers": len(peaks), "peak_rss_bytes_total": total, "peak_rss_bytes_per_worker": sorted(peaks.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
