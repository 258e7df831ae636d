"""The held-out tables (results/heldout_*.md, + .csv, + score-vs-accuracy plots): discovered proxies
against the baselines on networks an evolution run never saw.

Every proxy (the exported ``--proxy`` files first, then the baselines) is scored by
`eznas.evaluate.evaluate` on the same networks and the same batch: per task a seeded sample of
``--n`` networks (NB201) or every network (NDS, or ``--nds-n``), without the networks of the run
``--run`` (NB201 datasets share one architecture space, so an architecture evolved on CIFAR-10
is left out of CIFAR-100 and ImageNet16-120 as well). Scores go to the score cache, so a killed
run resumes and a larger ``--n`` only scores the networks it adds.

    python experiments/heldout.py --run results/proxies/eznas_best.json --proxy results/proxies/eznas_best.json --jobs 2

writes ``--out``.md and .csv (default results/heldout), ``--out``_KEY.png (KEY: the NB201 dataset
or NDS space; ``nb101_cifar10`` and the like for other spaces), a scatter of the first proxy's
score against test accuracy per task, and ``--out``_fitness.png (the run's fitness per generation).
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
from eznas.plots import plot_fitness, scatter
from eznas.run import read_run
from eznas.tables.evaluations import csv_table, heldout_report
from eznas.tasks import Task, parse_task

TASKS = ("nb201:cifar10", "nb201:cifar100", "nb201:ImageNet16-120", "nds:ENAS_in", "nds:PNAS_in",
         "nds:ResNeXt-A_in", "nds:ResNeXt-B_in")


def plot_label(task: Task) -> str:
    """A task's name in its scatter plot's file: the NB201 dataset or NDS space (the names the committed plots
    have), else the space and dataset, since nb101:cifar10 and nb301:cifar10 share NB201's ``cifar10``."""
    return task.key if task.space in ("nb201", "nds") else f"{task.space}_{task.key}"


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate the proxies on every held-out task and write the report, CSV and plots."""
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="evolution run whose networks are left out: its directory, or the "
                                                      ".json record of a proxy it produced")
    parser.add_argument("--proxy", action="append", default=[], help="extra PROXY (exported .py or its .json record, expression); repeatable")
    parser.add_argument("--baselines", default=",".join(proxies.names()), help="comma-separated baselines (default all)")
    add_sample_args(parser, TASKS, "results/heldout")
    args = parser.parse_args(argv)
    parallel = parallel_of(args)
    parallel.check()
    command = command_line("heldout.py", argv)
    wanted = list(args.proxy) + [b for b in args.baselines.split(",") if b]
    out = Path(args.out)
    plot_fitness(out.parent, read_run(args.run, args.data_dir).history, f"{out.name}_fitness.png")
    fix = "choose another --out prefix"
    for task, results in evaluate_tasks(wanted, args.tasks.split(","), args.n, args.nds_n, args.seed, parallel,
                                        args.run, data_dir=args.data_dir, cache_dir=args.cache_dir,
                                        scores_dir=args.scores_dir, space_n=dict(args.space_n)):
        if args.proxy:
            scatter(results[task][0], out.with_name(f"{out.name}_{plot_label(parse_task(task))}.png"))
        write_atomic(out.with_suffix(".md"), heldout_report(results, command, args.run, args.seed, args.data_dir), fix=fix)
        write_atomic(out.with_suffix(".csv"), csv_table([e for evals in results.values() for e in evals]), fix=fix)
    print(f"wrote {out}.md and {out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("heldout.py", main))
