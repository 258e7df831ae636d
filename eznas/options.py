"""Command-line options shared by the ``eznas`` subcommands and the scripts of ``experiments/``."""

from __future__ import annotations

import argparse


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
