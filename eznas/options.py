"""Command-line options shared by the ``eznas`` subcommands and the scripts of ``experiments/``: the
parser class (errors in one line), bounded integers, and the options several commands take."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


SEED = (0, 2**32 - 1)  # bounds of a seed option
JOBS = (1, 256)  # bounds of a --jobs option


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (``PROG: error: MESSAGE; see 'PROG --help'``)
    and exit status 2, like every other eznas error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [low, high], else a one-line error that gives the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low}..{high}")
        return value

    return parse


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: where the benchmark data lives (`eznas.datadir` resolves the default)."""
    parser.add_argument("--data-dir", default=None,
                        help="benchmark data directory (default: $EZNAS_DATA_DIR, then ./data, then ../shared/data)")


def add_spaces(parser: argparse.ArgumentParser) -> None:
    """``--spaces FILE``: a TOML file whose ``[spaces.NAME]`` tables declare user spaces (tasks ``user:NAME``)."""
    parser.add_argument("--spaces", metavar="FILE", default=None,
                        help="TOML file declaring your own search spaces in [spaces.NAME] tables (e.g. your run "
                             "config), so that tasks user:NAME can be named")


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
    parser.add_argument("--n", type=bounded(2, 100_000), default=1000, help="NB201 networks per dataset (default 1000)")
    parser.add_argument("--nds-n", type=bounded(2, 100_000), default=None,
                        help="networks per task of the other spaces (default: all)")
    parser.add_argument("--seed", type=bounded(*SEED), default=0, help="sample and batch seed (default 0)")
    parser.add_argument("--jobs", type=bounded(*JOBS), default=1, help="parallel workers (default 1)")
    parser.add_argument("--tasks", default=",".join(tasks), help="comma-separated task ids")
    parser.add_argument("--out", default=out, help=f"output prefix (default {out})")
    add_data_dir(parser)
    add_cache_dirs(parser)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that ran a table script (``python experiments/SCRIPT ARGS``), for its report's header."""
    return f"python experiments/{script} " + shlex.join(sys.argv[1:] if argv is None else list(argv))
