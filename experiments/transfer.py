"""Regenerate results/transfer.md (+ .csv): per search-space family, the proxy evolved without it
against every baseline on that family's networks (leave-one-family-out; `eznas.transfer`).

    python experiments/transfer.py --jobs 2 --n 200 --nds-n 100 --scores-dir results/scores  # results/transfer.md
    python experiments/transfer.py --folds nb101 --n 100 --nds-n 60 --out /tmp/t  # one fold, smaller samples

Each fold evolves (or resumes) in RUNS/without-FAMILY, chooses its program by --policy (default
accuracy, the fittest on the pools; validation, the best on validation networks of the other
families), exports it as PROXIES/without-FAMILY.py + .json (default results/proxies/transfer), and
scores it and all baselines through the score cache; the tables are rewritten after every fold, so a killed
run resumes where it stopped.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from eznas import config, proxies
from eznas.errors import guarded
from eznas.files import write_atomic
from eznas.options import Parser, add_sample_args, command_line, parallel_overrides
from eznas.report import POLICIES
from eznas.tables.evaluations import csv_table
from eznas.tables.transfer import SIZE_BASELINES, transfer_report
from eznas.transfer import NAMES, POLICY, evolve_fold, score_fold


def main(argv: Sequence[str] | None = None) -> int:
    """Run every fold in turn and write the report after each."""
    parser = Parser(description=__doc__.splitlines()[0])
    add_sample_args(parser, (), "results/transfer")
    parser.add_argument("--config", default="experiments/transfer.toml", help="base run config of every fold")
    parser.add_argument("--folds", default=",".join(NAMES), help=f"left-out families (default: {','.join(NAMES)})")
    parser.add_argument("--runs", default="runs/transfer", help="where the folds' run directories go")
    parser.add_argument("--proxies", default="results/proxies/transfer",
                        help="where each fold's chosen program is exported (without-FAMILY.py + .json)")
    parser.add_argument("--baselines", default=",".join(proxies.names()), help="comma-separated baselines (default all)")
    parser.add_argument("--policy", choices=POLICIES, default=POLICY,
                        help=f"how a fold chooses its program from the hall of fame (default {POLICY})")
    args = parser.parse_args(argv)
    command = command_line("transfer.py", argv)
    base = config.load(args.config, parallel_overrides(args))
    base.run.parallel.check()
    baselines = [b for b in args.baselines.split(",") if b]
    if missing := [b for b in SIZE_BASELINES if b not in baselines]:
        parser.error(f"--baselines must include {' and '.join(missing)}: the summary's margins are over them")
    folds = {}
    fix = "choose another --out prefix"
    for name in args.folds.split(","):
        record = evolve_fold(base, name, Path(args.runs), Path(args.proxies), args.data_dir, args.cache_dir,
                             policy=args.policy)
        folds[name] = (record, score_fold(record, name, args.n, args.nds_n, args.seed, base.run.parallel, args.data_dir,
                                          args.cache_dir, args.scores_dir, baselines))
        write_atomic(f"{args.out}.md", transfer_report(folds, command, args.seed, args.data_dir, args.policy), fix=fix)
        write_atomic(f"{args.out}.csv", csv_table([e for _, results in folds.values() for evals in results.values()
                                                   for e in evals]), fix=fix)
    print(f"wrote {args.out}.md and {args.out}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("transfer.py", main))
