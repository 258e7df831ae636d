"""Benchmark: statistics and fitness on a GPU against the CPU (a prepared check for a CUDA machine).

    python experiments/bench_gpu.py                  # 100 NB201 networks, a 500-network pool, cuda vs 2 CPU threads
    python experiments/bench_gpu.py --quick          # a few networks, cpu vs cpu: a smoke test anywhere

1. Agreement: the statistics of ``--n`` NB201 CIFAR-10 networks (seeded sample, the protocol's
   probe settings) computed on both devices (`eznas.pool.compute_stats`: the same seeded weights
   and batch, moved to the device); per statistic the largest relative difference over networks,
   max|a - b| / max|a|; and the Kendall tau of the published proxy's expression
   (``results/proxies/eznas_best.json``) on each device's statistics, and their difference.
2. Throughput: networks per second for the statistics (CPU: ``--threads`` torch threads), and
   programs per second for fitness: ``--programs`` seeded random programs (the set of
   `bench_fitness.program_set`) on a pool of ``--pool`` networks (the probed networks' statistics
   repeated: the speed depends on the shapes, not on the values), each on a fresh evaluator.
   Ratios are reference device time / other device time (above 1: the other device is faster).

Without a CUDA device (and without ``--quick``) it prints one JSON line saying so and exits 0.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from scipy import stats as sps

from bench_fitness import program_set
from eznas import benchmarks
from eznas import gp as programs
from eznas.fitness import Evaluator
from eznas.pool import compute_stats
from eznas.probe import NetworkStats, ProbeSettings
from eznas.statsbatch import StatsBatch, stack

TASK = "nb201:cifar10"
PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "proxies" / "eznas_best.json"
QUICK = {"n": 2, "pool": 8, "programs": 5, "devices": "cpu,cpu"}
QUICK_PROBE = ProbeSettings(batch_size=16, features=16, weight_rows=8, weight_cols=8, max_layers=4)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def probe_all(records: list[dict], cfg: ProbeSettings, device: str, data_dir: str | None) -> tuple[list[NetworkStats], float]:
    """Statistics of every record on ``device`` and the networks per second (a first, untimed network warms up)."""
    compute_stats(TASK, records[0]["arch"], cfg, data_dir, device)
    _sync(device)
    start = time.perf_counter()
    stats = [compute_stats(TASK, r["arch"], cfg, data_dir, device) for r in records]
    _sync(device)
    return stats, len(records) / (time.perf_counter() - start)


def max_relative(a: list[NetworkStats], b: list[NetworkStats]) -> dict[str, float]:
    """Per statistic (layer tensors and net scalars), the largest max|a - b| / max|a| over networks."""
    worst: dict[str, float] = {}
    for x, y in zip(a, b):
        pairs = {**{k: (v, y.layers[k]) for k, v in x.layers.items()},
                 **{k: (torch.tensor(v), torch.tensor(y.net[k])) for k, v in x.net.items()}}
        for name, (u, v) in pairs.items():
            rel = float((u - v).abs().max() / u.abs().max().clamp_min(1e-30)) if u.numel() else 0.0
            worst[name] = max(worst.get(name, 0.0), rel)
    return dict(sorted(worst.items()))


def published_tau(batch: StatsBatch, device: str) -> float:
    """Kendall tau-b of the published proxy's expression on ``batch`` (evaluated on ``device``)."""
    expression = json.loads(PUBLISHED.read_text())["expression"]
    scores = Evaluator(batch, device=device).safe_scores(programs.parse(expression))
    return float(sps.kendalltau(scores, batch.accuracy).statistic)


def programs_per_second(pool: StatsBatch, trees: list, device: str) -> float:
    """Programs per second scoring ``trees`` on ``pool`` with a fresh evaluator on ``device`` (after an
    untimed pass on one network, so that no primitive's first call is timed)."""
    warm = Evaluator(pool.select([0]), device=device)
    for tree in trees:
        warm.safe_scores(tree)
    evaluator = Evaluator(pool, device=device)
    _sync(device)
    start = time.perf_counter()
    for tree in trees:
        evaluator.safe_scores(tree)
    _sync(device)
    return len(trees) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Measure agreement and throughput of the two devices; print ratios and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="NB201 networks probed on each device (default 100)")
    parser.add_argument("--pool", type=int, default=500, help="networks in the fitness pool (default 500)")
    parser.add_argument("--programs", type=int, default=100, help="programs timed on the pool (default 100)")
    parser.add_argument("--devices", default="cpu,cuda", help="reference,other device (default cpu,cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2: two cores)")
    parser.add_argument("--quick", action="store_true", help="a few small networks, cpu vs cpu: a smoke test")
    parser.add_argument("--data-dir", default=None, help="benchmark data directory")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    reference, other = args.devices.split(",")
    if "cuda" in (reference + other) and not torch.cuda.is_available():
        print(json.dumps({"cuda": False, "note": "no CUDA device on this machine: nothing measured"}))
        return 0
    torch.set_num_threads(args.threads)
    cfg = QUICK_PROBE if args.quick else ProbeSettings()
    records = sorted(benchmarks.sample(TASK, args.n, 0, args.data_dir), key=lambda r: r["index"])
    (a, a_rate), (b, b_rate) = (probe_all(records, cfg, d, args.data_dir) for d in (reference, other))
    accuracy, tasks, index = [r["accuracy"] for r in records], [TASK] * len(records), [r["index"] for r in records]
    tau_a, tau_b = (published_tau(stack(s, accuracy, tasks, index), d) for s, d in ((a, reference), (b, other)))
    relative = max_relative(a, b)
    repeat = [i % len(records) for i in range(args.pool)]
    pool = stack([a[i] for i in repeat], [accuracy[i] for i in repeat], [TASK] * len(repeat), repeat)
    trees = program_set(args.programs, 5)
    p_a, p_b = (programs_per_second(pool, trees, d) for d in (reference, other))
    for name, rel in relative.items():
        print(f"max relative difference {name:>16}: {rel:.3g}")
    print(f"published proxy tau on {len(records)} networks: {tau_a:+.4f} ({reference}) {tau_b:+.4f} ({other}), "
          f"difference {tau_b - tau_a:+.2g}")
    print(f"statistics: {a_rate:.2f} nets/s ({reference}) {b_rate:.2f} nets/s ({other}), ratio {b_rate / a_rate:.2f}")
    print(f"fitness on {args.pool} networks: {p_a:.2f} programs/s ({reference}) {p_b:.2f} programs/s ({other}), "
          f"ratio {p_b / p_a:.2f}")
    print(json.dumps({"cuda": torch.cuda.is_available(), "devices": [reference, other], "networks": len(records),
                      "threads": args.threads, "max_relative_difference": relative, "tau": [tau_a, tau_b],
                      "tau_difference": tau_b - tau_a, "stats_nets_per_s": [a_rate, b_rate],
                      "stats_ratio": b_rate / a_rate, "pool": args.pool, "programs": args.programs,
                      "fitness_programs_per_s": [p_a, p_b], "fitness_ratio": p_b / p_a,
                      "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
