"""The ``eznas`` command: thin subcommands, each calling one library function.

One top-level handler (`errors.guarded`) turns `EznasError` into a single ``eznas: error: ...`` line on stderr
and exit status 2; nothing else is printed for such errors (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from eznas import data as data_cmd
from eznas import evaluate as evaluate_cmd
from eznas import search as search_cmd
from eznas.errors import EznasError, guarded
from eznas.options import add_cache_dirs, add_data_dir
from eznas.parallel import check_backend

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"data": data_cmd.run, "evaluate": evaluate_cmd.run,
                                                             "search": search_cmd.run}


def command(name: str) -> Callable:
    """Register a subcommand handler under ``name``."""

    def register(func: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = func
        return func

    return register


def _add_parallel(p: argparse.ArgumentParser, defaults_from_config: bool = False) -> None:
    note = " (default: from the config)" if defaults_from_config else ""
    p.add_argument("--jobs", type=int, default=None, help=f"parallel workers{note or ' (default 1)'}")
    p.add_argument("--backend", default=None, choices=["loky", "threading", "sequential", "dask", "ray"],
                   help=f"joblib backend{note or ' (default loky)'}")
    p.add_argument("--address", default=None, help="dask scheduler or ray cluster address")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="eznas", description="Evolve zero-cost NAS proxies with genetic programming.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe a task, or one architecture of it (params, accuracy)")
    p.add_argument("task", help="task id, e.g. nb201:cifar10 or nds:DARTS_in")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--arch", help="NB201 architecture string")
    g.add_argument("--index", type=int, help="architecture index in the benchmark file")
    add_data_dir(p)

    p = sub.add_parser("stats", help="fill the statistics cache for a task (resumable, with progress)")
    p.add_argument("--task", required=True, help="task id, e.g. nb201:cifar10")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--n", type=int, default=200, help="networks to probe, a seeded sample (default 200)")
    g.add_argument("--all", action="store_true", help="probe every network of the task")
    p.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    p.add_argument("--exclude-run", metavar="RUN", help="leave out the networks evolution run RUN used, as "
                                                        "'eznas evaluate --exclude-run' does (its held-out networks; RUN: a run "
                                                        "directory or an exported .json record)")
    p.add_argument("--config", help="take the [probe] settings and run.retries / run.timeout from this run config "
                                    "(default: built-in defaults)")
    _add_parallel(p)
    add_data_dir(p)
    add_cache_dirs(p, scores=False)

    p = sub.add_parser("evolve", help="launch or resume an evolution run")
    p.add_argument("config", help="run config (TOML), e.g. experiments/default.toml")
    p.add_argument("--out", required=True, help="run directory (checkpoint written there every generation)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--seed", type=int, help="override run.seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, e.g. --set evolution.generations=5 (repeatable)")
    _add_parallel(p, defaults_from_config=True)
    add_data_dir(p)
    add_cache_dirs(p, scores=False)

    p = sub.add_parser("inspect", help="show the best programs and the Pareto front of a run",
                       description="Hall of fame and Pareto front of a run. Policies mark one row with >>>>: "
                                   "'accuracy' = highest pool fitness; 'parsimony' = smallest program within 0.01 "
                                   "of the highest pool fitness.")
    p.add_argument("run", help="run directory")
    p.add_argument("--top", type=int, default=10, help="hall-of-fame rows to show (default 10)")
    p.add_argument("--policy", default="accuracy", choices=["accuracy", "parsimony"], help="row marked >>>>")
    p.add_argument("--no-heldout", action="store_true", help="skip held-out taus (they need held-out statistics)")
    add_data_dir(p)
    add_cache_dirs(p, scores=False)

    data_cmd.add_parser(sub)
    evaluate_cmd.add_parser(sub)
    search_cmd.add_parser(sub)

    p = sub.add_parser("export", help="write a discovered program as a standalone Python proxy")
    p.add_argument("run", help="run directory")
    p.add_argument("--rank", type=int, default=0, help="hall-of-fame rank to export (default 0, the best)")
    p.add_argument("-o", "--output", required=True, help="output .py file")
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


def _run_overrides(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    if args.seed is not None:
        items.append(f"run.seed={args.seed}")
    if args.jobs is not None:
        items.append(f"run.n_jobs={args.jobs}")
    if args.backend is not None:
        items.append(f'run.backend="{args.backend}"')
    if args.address is not None:
        items.append(f'run.address="{args.address}"')
    return items


@command("stats")
def _stats(args: argparse.Namespace) -> int:
    from eznas import config
    from eznas.cache import StatsCache
    from eznas.evaluate import sample_records
    from eznas.pool import fill_cache
    from eznas.report import read_run, used_indices

    cfg = config.load(args.config) if args.config else config.Config()
    n_jobs, backend, address = args.jobs or 1, args.backend or "loky", args.address or ""
    check_backend(backend, n_jobs, address)
    exclude = used_indices(read_run(args.exclude_run, args.data_dir).pools, args.task) if args.exclude_run else None
    records = sample_records(args.task, None if args.all else args.n, args.seed, args.data_dir, exclude)
    cache = StatsCache(args.cache_dir) if args.cache_dir else StatsCache()
    done, failed = fill_cache(args.task, records, cfg.probe, cache, n_jobs, backend, address, args.data_dir,
                              retries=cfg.run.retries, timeout=cfg.run.job_timeout)
    print(f"{args.task}: {len(records)} networks, {done} computed, {len(failed)} failed, "
          f"{len(records) - done - len(failed)} already cached in {cache.root}")
    return 0


@command("evolve")
def _evolve(args: argparse.Namespace) -> int:
    from eznas import config, evolve

    cfg = config.load(args.config, _run_overrides(args))
    check_backend(cfg.run.backend, cfg.run.n_jobs, cfg.run.address)
    state = evolve.run(cfg, args.out, resume=args.resume, force=args.force, data_dir=args.data_dir, cache_dir=args.cache_dir)
    best = evolve.hall_of_fame(state.scored, 1)
    if best:
        b = best[0]
        print(f"best: {b['infix']}")
        print("  pool tau: " + ", ".join(f"{t} {v:+.4f}" for t, v in b["taus"].items()) + f"; fitness {b['fitness']:+.4f}")
    return 0


@command("inspect")
def _inspect(args: argparse.Namespace) -> int:
    from eznas.report import inspect_run

    print(inspect_run(args.run, top=args.top, policy=args.policy, heldout=not args.no_heldout,
                      data_dir=args.data_dir, cache_dir=args.cache_dir))
    return 0


@command("export")
def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from eznas import config
    from eznas.evolve import read_checkpoint
    from eznas.export import export_source, run_record

    out = Path(args.run)
    ckpt = read_checkpoint(out)
    hof = ckpt["hall_of_fame"]
    if not 0 <= args.rank < len(hof):
        raise EznasError(f"--rank {args.rank} does not exist: {out} has hall-of-fame ranks 0..{len(hof) - 1}")
    row = hof[args.rank]
    cfg = config.from_dict(ckpt["config"], source=str(out / "checkpoint.json"))
    info = {"run": str(out), "rank": args.rank, "pool_fitness": row["fitness"], "pool_taus": row["taus"],
            "seed": cfg.run.seed, "evolve_tasks": list(cfg.tasks.evolve), "probe": cfg.probe.__dict__}
    text = export_source(row["expr"], cfg.probe, info)
    target = Path(args.output)
    record = target.with_suffix(".json")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for path, content in ((target, text), (record, json.dumps(run_record(ckpt, args.rank, str(out)), indent=1))):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(content)
            tmp.replace(path)
    except OSError as e:
        raise EznasError(f"cannot write {target}: {e.strerror}; choose another -o path") from None
    print(f"wrote {target} and {record.name}: score = {row['infix']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eznas`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded("eznas", lambda: COMMANDS[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
