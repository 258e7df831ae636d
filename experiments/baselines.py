"""Regenerate results/baselines.md and results/baselines.csv: every baseline proxy on every task.

Tasks: NB201 CIFAR-10, CIFAR-100 and ImageNet16-120 (a seeded sample of ``--n`` networks each)
and the NDS ImageNet sweeps of the default protocol (``--nds-n`` networks each, default all).
Every proxy sees the same networks (net seed 0) and the same batch of 64 real images (seed
``--seed``), through `eznas.evaluate.evaluate`; per-network scores go to the score cache, so a
killed run resumes and a larger ``--n`` (same seed) only scores the networks it adds (the
sample of n is a prefix of the sample of a larger n).

    python experiments/baselines.py --n 1000 --seed 0 --jobs 2 \
        --exclude-run results/proxies/eznas_best.json --scores-dir results/scores   # the full protocol
    python experiments/baselines.py --n 100 --nds-n 20 --jobs 2                      # a quick look

``--space-n SPACE=N`` sets one space's sample apart (results/baselines.md holds 100 NB101 and
100 NB301 networks, ``--space-n nb101=100 --space-n nb301=100``: every baseline on one NB101
network takes about 40 s of one core).

``--exclude-run RUN`` leaves the networks of an evolution run (its directory, or the ``.json``
record of a proxy it produced, whose config fixes the pools) out of the NB201 samples, so the
NB201 columns are scored on exactly the held-out networks of `experiments/heldout.py --run RUN`
(same --n and seed).

The Markdown file states the command, seeds, network counts and input resolutions, the
Kendall tau-b / Spearman rho / top-10% precision / seconds per network of every proxy on every
task, and our figures next to published ones (with 95% bootstrap intervals, since small
samples move tau by several hundredths).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from eznas import proxies
from eznas.errors import guarded
from eznas.evaluate import evaluate_tasks
from eznas.files import write_atomic
from eznas.options import Parser, add_sample_args, command_line, parallel_of
from eznas.tables.evaluations import NASLIB_TASKS, NB201_TASKS, NDS_TASKS, baselines_report, csv_table


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate every baseline on every task and write the Markdown and CSV reports."""
    parser = Parser(description=__doc__.splitlines()[0])
    add_sample_args(parser, NB201_TASKS + NDS_TASKS + NASLIB_TASKS, "results/baselines")
    parser.add_argument("--exclude-run", metavar="RUN",
                        help="leave the networks of this evolution run (its directory or the .json record of a proxy "
                             "it produced) out of the NB201 samples (the held-out networks of experiments/heldout.py); "
                             "NDS spaces stay whole")
    args = parser.parse_args(argv)
    parallel = parallel_of(args)
    parallel.check()
    command = command_line("baselines.py", argv)
    tasks = args.tasks.split(",")
    full = (args.n >= 1000 and args.nds_n is None and not args.space_n
            and set(tasks) >= set(NB201_TASKS + NDS_TASKS + NASLIB_TASKS))
    fix = "choose another --out prefix"
    for _, results in evaluate_tasks(proxies.names(), tasks, args.n, args.nds_n, args.seed, parallel,
                                     args.exclude_run, ("nb201",), args.data_dir, args.cache_dir, args.scores_dir,
                                     dict(args.space_n)):
        write_atomic(Path(f"{args.out}.md"), baselines_report(results, command, args.seed, args.data_dir,
                                                               args.exclude_run, full), fix=fix)
        write_atomic(Path(f"{args.out}.csv"), csv_table([e for evals in results.values() for e in evals]), fix=fix)
    print(f"wrote {args.out}.md and {args.out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("baselines.py", main))
