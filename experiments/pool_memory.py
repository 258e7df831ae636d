"""Memory of a statistics pool: load N networks of a task from the cache (computing what is
missing) and print the bytes of the stacked tensors and the process's peak RSS; the last line
is one JSON object.

    python experiments/pool_memory.py --task nb201:cifar10 --n 500 --jobs 2
    python experiments/pool_memory.py --task nb201:cifar10 --run runs/default   # a run's own pool
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from eznas import benchmarks
from eznas import config as config_mod
from eznas.cache import StatsCache
from eznas.parallel import Parallel
from eznas.run import read_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    """Load the pool, print its size."""
    from eznas.pool import load_pool

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="nb201:cifar10")
    parser.add_argument("--n", type=int, default=500, help="networks (a seeded sample, seed 0)")
    parser.add_argument("--run", default=None, help="take the networks of this evolution run's pool instead")
    parser.add_argument("--config", default="experiments/default.toml", help="probe settings from this run config")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    cfg = config_mod.load(args.config)
    if args.run:
        used = set(read_checkpoint(Path(args.run))["pools"][args.task])
        records = [r for r in benchmarks.load_task(args.task) if r["index"] in used]
    else:
        records = sorted(benchmarks.sample(args.task, args.n, 0), key=lambda r: r["index"])
    cache = StatsCache(args.cache_dir) if args.cache_dir else StatsCache()
    start = time.perf_counter()
    pool = load_pool(args.task, records, cfg.probe, cache, Parallel(jobs=args.jobs))
    seconds = time.perf_counter() - start
    tensors = [*pool.layers.values(), *pool.net.values()]
    size = sum(t.numel() * t.element_size() for t in tensors)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(f"{args.task}: {pool.n_nets} networks, {len(pool.seg)} layers: stacked tensors {size / 2**30:.3f} GiB "
          f"({size / pool.n_nets / 2**20:.2f} MiB per network), peak RSS {peak / 2**30:.2f} GiB, "
          f"load (and fill) {seconds:.1f} s")
    print(json.dumps({"task": args.task, "networks": pool.n_nets, "tensor_bytes": size, "peak_rss_bytes": peak,
                      "seconds": round(seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
