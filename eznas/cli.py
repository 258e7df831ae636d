"""The ``eznas`` command: thin subcommands, each calling one library function.

One top-level handler turns `EznasError` into a single ``eznas: error: ...`` line on stderr
and exit status 2; nothing else is printed for such errors (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from eznas.errors import EznasError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    """Register a subcommand handler under ``name``."""

    def register(func: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = func
        return func

    return register


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="benchmark data directory (default: $EZNAS_DATA_DIR, then ./data, then ../shared/data)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="eznas", description="Evolve zero-cost NAS proxies with genetic programming.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe a task, or one architecture of it (params, accuracy)")
    p.add_argument("task", help="task id, e.g. nb201:cifar10 or nds:DARTS_in")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--arch", help="NB201 architecture string")
    g.add_argument("--index", type=int, help="architecture index in the benchmark file")
    _add_data_dir(p)
    return parser


@command("info")
def _info(args: argparse.Namespace) -> int:
    from eznas import benchmarks
    from eznas.spaces import build_network, count_params
    from eznas.tasks import parse_task

    task = parse_task(args.task)
    records = benchmarks.load_task(task, args.data_dir)
    if args.arch is None and args.index is None:
        accs = sorted(r["accuracy"] for r in records)
        print(f"{task.name}: {len(records)} architectures from {benchmarks.task_file(task)}; "
              f"accuracy min {accs[0]:.2f} median {accs[len(accs) // 2]:.2f} max {accs[-1]:.2f} %; "
              f"{task.num_classes} classes, {task.resolution}x{task.resolution} inputs from {task.images}")
        return 0
    if args.arch is not None:
        if task.space != "nb201":
            raise EznasError("--arch takes an NB201 arch string; for NDS tasks use --index")
        index = benchmarks.arch_index(args.arch, args.data_dir)
    else:
        index = args.index
        if not 0 <= index < len(records):
            raise EznasError(f"--index {index} out of range: {task.name} has indices 0..{len(records) - 1}")
    record = records[index]
    params = count_params(build_network(task, record["arch"], device="meta"))
    print(f"{task.name} #{index}: accuracy {record['accuracy']:.2f} %, {params} parameters")
    print(f"arch: {record['arch']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eznas`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except EznasError as e:
        print(f"eznas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eznas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
