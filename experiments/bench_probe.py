"""Benchmark: probe cost per network against a bare forward + backward on the same net and batch.

Twenty NB201 networks (CIFAR-10 layout, 32x32, 10 classes) and twenty NDS DARTS_in networks
(64x64, 1000 classes), seeded samples, each with a batch of 64 random-normal images and
random labels, on 2 CPU threads. For every network it times, interleaved: a bare forward +
backward (cross-entropy, ``torch.autograd.grad`` over all parameters, BN in train mode), the
probe of every statistic but the Hessian ones (``needs`` = all but `HESSIAN_STATS`: what a run
with ``evolution.statistics = ["-H", "-log_h_trace"]`` probes, no Hessian-vector product) and the
full probe (default settings).
Each figure is the best of ``--repeats`` runs, as wall-clock seconds and as process CPU
seconds (the latter is less sensitive to other processes competing for the cores).

Prints a line per network, a summary per space and, as the last line, one JSON object with
the medians over networks and the median ratios full probe / forward+backward (target: <= 4)
and probe without the Hessian / forward+backward.

    python experiments/bench_probe.py [--n 20] [--threads 2] [--repeats 2] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from eznas import datadir
from eznas.probe import ALL_STATS, HESSIAN_STATS, ProbeSettings, probe
from eznas.spaces import build_network, count_params
from eznas.tasks import parse_task

BATCH = 64


def nb201_archs(n: int, seed: int, data_dir: str | None) -> list[str]:
    """``n`` architecture strings sampled (seeded) from the NB201 CSV."""
    with open(datadir.find("nb201/nats_bench.csv", data_dir), newline="") as f:
        archs = [row["ArchitectureString"] for row in csv.DictReader(f)]
    return random.Random(seed).sample(archs, n)


def nds_archs(n: int, seed: int, data_dir: str | None) -> list[dict[str, Any]]:
    """``n`` ``net`` dicts sampled (seeded) from the NDS DARTS_in file."""
    with open(datadir.find("nds/DARTS_in.json", data_dir)) as f:
        entries = json.load(f)
    return [e["net"] for e in random.Random(seed).sample(entries, n)]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def forward_backward(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The baseline: one training-mode forward and backward, gradients of all parameters."""
    net.train()
    loss = F.cross_entropy(net(x), y)
    torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad], allow_unused=True)


def bench_space(task: str, archs: list[Any], seed: int, repeats: int) -> list[dict[str, float]]:
    """Per-network timings (seconds) of one task's networks."""
    t = parse_task(task)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, t.resolution, t.resolution, generator=gen)
    y = torch.randint(0, t.num_classes, (BATCH,), generator=gen)
    settings = ProbeSettings()
    rows = []
    for i, arch in enumerate(archs):
        net = build_network(task, arch, seed=0)
        if i == 0:
            probe(net, x, y, settings)  # warm-up of the double-backward kernels
        forward_backward(net, x, y)  # warm-up (allocator, kernels)
        row = {"params_m": count_params(net) / 1e6}
        runs = {
            "fwd_bwd": lambda: forward_backward(net, x, y),
            "probe_no_h": lambda: probe(net, x, y, settings, needs=ALL_STATS - HESSIAN_STATS),
            "probe": lambda: probe(net, x, y, settings),
        }
        for name, fn in runs.items():
            row[f"{name}_s"], row[f"{name}_cpu_s"] = timed(fn, repeats)
        for name, probed in (("ratio", "probe"), ("ratio_no_h", "probe_no_h")):
            row[name] = row[f"{probed}_s"] / row["fwd_bwd_s"]
            row[f"{name}_cpu"] = row[f"{probed}_cpu_s"] / row["fwd_bwd_cpu_s"]
        rows.append(row)
        print(f"  {task} #{i:2d}  params {row['params_m']:6.3f} M  "
              f"fwd+bwd {row['fwd_bwd_s']:6.3f} s  probe w/o H {row['probe_no_h_s']:6.3f} s  "
              f"probe {row['probe_s']:6.3f} s  "
              f"ratio {row['ratio']:4.2f} (cpu {row['ratio_cpu']:4.2f}), w/o H {row['ratio_no_h']:4.2f}", flush=True)
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Medians over networks; the ratios are medians of the per-network ratios."""
    return {key: round(statistics.median(r[key] for r in rows), 4) for key in rows[0]
            if key != "params_m"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="networks per space (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure, best kept")
    parser.add_argument("--seed", type=int, default=0, help="sampling and batch seed")
    parser.add_argument("--data-dir", default=None, help="benchmark data directory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spaces = {
        "nb201:cifar10": nb201_archs(args.n, args.seed, args.data_dir),
        "nds:DARTS_in": nds_archs(args.n, args.seed, args.data_dir),
    }
    result: dict[str, Any] = {"threads": args.threads, "batch": BATCH, "n": args.n,
                              "repeats": args.repeats, "torch": torch.__version__}
    all_rows = []
    for task, archs in spaces.items():
        rows = bench_space(task, archs, args.seed, args.repeats)
        all_rows += rows
        result[task] = summary(rows)
        s = result[task]
        print(f"{task}: median fwd+bwd {s['fwd_bwd_s']:.3f} s, "
              f"probe w/o H {s['probe_no_h_s']:.3f} s, probe {s['probe_s']:.3f} s, "
              f"median ratio {s['ratio']:.2f} (CPU time: {s['ratio_cpu']:.2f}), "
              f"w/o H {s['ratio_no_h']:.2f} (CPU time: {s['ratio_no_h_cpu']:.2f})", flush=True)
    result["all"] = summary(all_rows)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
