"""Command-line options shared by the ``eznas`` subcommands and the scripts of ``experiments/``: the
parser class (errors in one line), bounded integers, and the options several commands take."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from eznas.backends import BACKENDS
from eznas.parallel import MAX_TIMEOUT, Parallel

SEED = (0, 2**32 - 1)  # bounds of a seed option
JOBS = (1, 256)  # bounds of a --jobs option
RETRIES = (0, 100)  # bounds of a --retries option


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (``PROG: error: MESSAGE; see 'PROG --help'``)
    and exit status 2, like every other eznas error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def bounded(low: float, high: float, number: type = int) -> Callable[[str], Any]:
    """An argparse ``type``: a ``number`` (int, or float) in [low, high], else a one-line error that gives
    the range (NaN is out of every range)."""
    what = "an integer" if number is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low}..{high}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse ``type``: seconds in [0, `MAX_TIMEOUT`], else a one-line error that gives the range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: use 0..{MAX_TIMEOUT:g} seconds (0: no limit)")
    return value


def space_count(text: str) -> tuple[str, int]:
    """An argparse ``type``: ``SPACE=N`` (networks per task of that space), else a one-line error."""
    space, sep, count = text.partition("=")
    if not sep or not space:
        raise argparse.ArgumentTypeError(f"{text!r} is not SPACE=N (e.g. nb101=100)")
    return space, bounded(2, 100_000)(count)


def add_parallel(parser: argparse.ArgumentParser, defaults_from_config: bool = False) -> None:
    """``--jobs --backend --address --retries --timeout``: where jobs run (`eznas.parallel.Parallel`).

    Each defaults to None, so that `parallel_of` tells a given option from an absent one.
    """
    d = Parallel()
    note = (lambda _: " (default: from the config)") if defaults_from_config else (lambda v: f" (default {v})")
    parser.add_argument("--jobs", type=bounded(*JOBS), default=None, help=f"parallel workers{note(d.jobs)}")
    parser.add_argument("--backend", default=None, choices=BACKENDS, help=f"where jobs run{note(d.backend)}")
    parser.add_argument("--address", default=None, help="dask scheduler or ray cluster address (default: start a "
                                                        "local one)")
    parser.add_argument("--retries", type=bounded(*RETRIES), default=None,
                        help=f"further attempts for a job that raises, dies or times out{note(d.retries)}")
    parser.add_argument("--timeout", type=seconds, default=None,
                        help=f"seconds one job may run, 0 for no limit{note(0)}")


def parallel_of(args: argparse.Namespace, base: Parallel = Parallel()) -> Parallel:
    """``base`` with the options of `add_parallel` that were given (``--timeout 0``: no limit)."""
    given = {name: getattr(args, name) for name in ("backend", "address", "jobs", "retries", "timeout")
             if getattr(args, name) is not None}
    if "timeout" in given:
        given["timeout"] = given["timeout"] or None
    return dataclasses.replace(base, **given)


def parallel_overrides(args: argparse.Namespace) -> list[str]:
    """The options of `add_parallel` that were given, as run-config overrides (``run.n_jobs=2``, ...)."""
    keys = {"jobs": "n_jobs", "backend": "backend", "address": "address", "retries": "retries", "timeout": "timeout"}
    return [f"run.{key}={json.dumps(getattr(args, name))}" for name, key in keys.items()
            if getattr(args, name) is not None]


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
    """The options of a table script: sample sizes, seed, where jobs run (`add_parallel`), tasks (when it has
    defaults), output prefix, directories."""
    parser.add_argument("--n", type=bounded(2, 100_000), default=1000, help="NB201 networks per dataset (default 1000)")
    parser.add_argument("--nds-n", type=bounded(2, 100_000), default=None,
                        help="networks per task of the other spaces (default: all)")
    parser.add_argument("--space-n", type=space_count, action="append", default=[], metavar="SPACE=N",
                        help="networks per task of one space, over --n/--nds-n (e.g. nb101=100); repeatable")
    parser.add_argument("--seed", type=bounded(*SEED), default=0, help="sample and batch seed (default 0)")
    add_parallel(parser)
    if tasks:
        parser.add_argument("--tasks", default=",".join(tasks), help="comma-separated task ids")
    parser.add_argument("--out", default=out, help=f"output prefix (default {out})")
    add_data_dir(parser)
    add_cache_dirs(parser)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command that ran a table script (``python experiments/SCRIPT ARGS``), for its report's header."""
    return f"python experiments/{script} " + shlex.join(sys.argv[1:] if argv is None else list(argv))
