"""Zero-shot NAS with proxies: random search and REA on the three NB201 datasets, over seeds.

For every proxy, NB201 dataset, strategy and seed, `eznas.search.search` selects an architecture
with ``--budget`` distinct architectures scored; the report gives the mean +- std (over seeds,
sample std) of the selected architectures' test accuracy, their mean percentile in the space, and
the best accuracy in the space. Networks are scored on the evaluation protocol (net seed 0, batch
of 64 images with batch seed 0) through the shared score cache, so seeds, strategies and
`eznas evaluate --seed 0` reuse each other's scores and a killed run resumes cheaply.

    python experiments/search.py --proxies params,synflow,naswot --budget 1000 --seeds 5 --jobs 2 \\
        --out results/search          # the full protocol (many hours on 2 cores)
    python experiments/search.py --proxies params,flops --budget 20 --seeds 2 --out /tmp/search_check

Writes OUT.md (the command line in its header, the summary table and every run) and OUT.csv
(the summary rows) and OUT_runs.csv (one row per search).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from eznas.errors import guarded
from eznas.files import write_atomic
from eznas.options import Parser, add_cache_dirs, add_data_dir, add_parallel, bounded, command_line, parallel_of
from eznas.search import STRATEGIES, SearchResult, search
from eznas.tables.evaluations import NB201_TASKS
from eznas.tables.searches import runs_csv, search_report, summary_csv


def main(argv: Sequence[str] | None = None) -> int:
    """Run every (proxy, task, strategy, seed) search and write the reports after each one."""
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", required=True, help="comma-separated PROXY arguments (baselines, .py files)")
    parser.add_argument("--budget", type=bounded(1, 100_000), default=1000, help="architectures scored per search (default 1000)")
    parser.add_argument("--seeds", type=bounded(1, 1000), default=5, help="search seeds 0..S-1 (default 5)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (default random,rea)")
    parser.add_argument("--tasks", default=",".join(NB201_TASKS), help="comma-separated task ids (default: NB201)")
    add_parallel(parser)
    parser.add_argument("--out", required=True, help="output prefix: writes OUT.md, OUT.csv and OUT_runs.csv")
    add_data_dir(parser)
    add_cache_dirs(parser)
    args = parser.parse_args(argv)
    parallel = parallel_of(args)
    parallel.check()
    command = command_line("search.py", argv)
    prefix = args.out[:-3] if args.out.endswith(".md") else args.out
    proxy_args = [p.strip() for p in args.proxies.split(",") if p.strip()]
    results: list[SearchResult] = []
    plan = [(p, t, s, seed) for t in args.tasks.split(",") for p in proxy_args
            for s in args.strategies.split(",") for seed in range(args.seeds)]
    fix = "choose another --out prefix"
    for i, (proxy, task, strategy, seed) in enumerate(plan, start=1):
        r = search(proxy, task, strategy, args.budget, seed, parallel, args.data_dir, args.cache_dir,
                   scores_dir=args.scores_dir)
        results.append(r)
        print(f"[{i}/{len(plan)}] {r.line()}", flush=True)
        write_atomic(Path(f"{prefix}.md"), search_report(results, command, complete=i == len(plan)), fix=fix)
        write_atomic(Path(f"{prefix}.csv"), summary_csv(results), fix=fix)
        write_atomic(Path(f"{prefix}_runs.csv"), runs_csv(results), fix=fix)
    print(f"wrote {prefix}.md, {prefix}.csv and {prefix}_runs.csv")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("search.py", main))
