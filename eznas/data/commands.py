"""The ``eznas data`` subcommands: ``fetch`` and ``check``.

`add_arguments` builds the ``data`` parser of ``eznas`` (`eznas.cli`). `run` executes a parsed ``data`` command.
`EznasError` propagates to the caller, and the ``eznas`` entry point turns it into one line
and exit status 2.
"""

from __future__ import annotations

import argparse

from eznas.data.check import check
from eznas.data.fetch import MIRROR_ENV, fetch
from eznas.data.sources import GROUPS
from eznas.datadir import ENV_VAR

_FETCH_DESCRIPTION = (
    "Download the benchmark data from its public sources, verify it, and place it in the data "
    f"directory: --data-dir, else ${ENV_VAR}, else ./data. Sources: the NAS-Bench-201 CSV (GitHub), "
    "the NDS data.zip (dl.fbaipublicfiles.com), the CIFAR-10/100 python archives (cs.toronto.edu), "
    "converted to 5,000-image .npz samples, and the optional NAS-Bench-101/301 samples of "
    "NAS-Bench-Suite-Zero (NASLib, GitHub). Archives are kept under <data dir>/archives/. "
    "Interrupted downloads resume, and files that fail verification are never placed. "
    "With --mirror URL, each file is fetched from URL/<path in the data directory>, "
    "else produced from URL/archives/<archive name>."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the actions of ``eznas data`` (``fetch``, ``check``) to its parser ``p``; the action chosen is
    ``args.data_command``."""
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = sub.add_parser("fetch", help="download, verify and place the benchmark data", description=_FETCH_DESCRIPTION)
    f.add_argument("--data-dir", default=None, help=f"target directory (default: ${ENV_VAR}, else ./data)")
    f.add_argument("--only", choices=GROUPS, default=None, help="fetch one group only (default: all)")
    f.add_argument("--mirror", default=None, metavar="URL",
                   help=f"http(s):// or file:// base URL of a mirror (default: ${MIRROR_ENV}, else the public sources)")
    c = sub.add_parser("check", help="list the data eznas finds, whether it verifies, and the tasks it allows",
                       description="List every data file eznas knows, where the lookup order finds it, whether it "
                                   "verifies, and which tasks are available. Exit status 0 when the default "
                                   "experiment has everything it needs, 2 otherwise.")
    c.add_argument("--data-dir", default=None,
                   help=f"search only this directory (default: ${ENV_VAR}, ./data, ../shared/data in that order)")


def run(args: argparse.Namespace) -> int:
    """Execute ``eznas data fetch`` or ``eznas data check``; return the exit status.

    Raises
    ------
    EznasError
        On a failed fetch (the caller prints it and exits with status 2).
    """
    if args.data_command == "fetch":
        fetch(args.data_dir, args.only, args.mirror)
        return 0
    return 0 if check(args.data_dir) else 2
