"""Command-line options shared by the ``eznas`` subcommands and the scripts of ``experiments/``."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the benchmark data lives (`eznas.datadir` resolves the default)."""
    parser.add_argument("--data-dir", default=None,
                        help="benchmark data directory (default: $EZNAS_DATA_DIR, then ./data, then ../shared/data)")


def add_cache_dirs(parser: argparse.ArgumentParser, scores: bool = True) -> None:
    """``--cache-dir`` (the cache root) and, with ``scores``, ``--scores-dir`` (the per-network score cache)."""
    parser.add_argument("--cache-dir", default=None,
                        help="cache root: network statistics, and scores under scores/ "
                             "(default: $EZNAS_CACHE_DIR or ./.eznas_cache)")
    if scores:
        parser.add_argument("--scores-dir", default=None,
                            help="per-network score cache (default: CACHE_ROOT/scores; results/scores holds the "
                                 "scores behind the committed tables)")


def add_sample_args(parser: argparse.ArgumentParser, tasks: Sequence[str], out: str) -> None:
    """The options of a table script: sample sizes, seed, workers, tasks, output prefix, directories."""
    parser.add_argument("--n", type=int, default=1000, help="NB201 networks per dataset (default 1000)")
    parser.add_argument("--nds-n", type=int, default=None, help="networks per task of the other spaces (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sample and batch seed (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel workers (default 1)")
    parser.add_argument("--tasks", default=",".join(tasks), help="comma-separated task ids")
    parser.add_argument("--out", default=out, help=f"output prefix (default {out})")
    add_data_dir(parser)
    add_cache_dirs(parser)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that ran a table script (``python experiments/SCRIPT ARGS``), for its report's header."""
    return f"python experiments/{script} " + shlex.join(sys.argv[1:] if argv is None else list(argv))
