"""The ``eznas`` command: thin subcommands, each parsing its arguments and calling the library.

Every subcommand is registered the same way, with `subcommand`: a name, its help, a function
that adds its arguments, and the handler that runs it. One top-level handler
(`errors.guarded`) turns `EznasError` into a single ``eznas: error: ...`` line on stderr and
exit status 2; nothing else is printed for such errors (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eznas import proxies, user_spaces
from eznas.data import commands as data_cmd
from eznas.errors import EznasError, guarded
from eznas.options import (SEED, Parser, add_cache_dirs, add_data_dir, add_parallel, add_spaces, bounded, parallel_of,
                           parallel_overrides)
from eznas.parallel import Parallel
from eznas.report import POLICIES
from eznas.search import STRATEGIES


@dataclass(frozen=True)
class Subcommand:
    """One ``eznas`` subcommand: its help, its arguments and its handler (which returns the exit status)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None],
               description: str | None = None) -> Callable:
    """Register the decorated handler as subcommand ``name`` (in the order of registration)."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} is registered twice")
        SUBCOMMANDS[name] = Subcommand(help, arguments, run, description)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = Parser(prog="eznas", description="Evolve zero-cost NAS proxies with genetic programming.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help, description=command.description))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eznas`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        if getattr(args, "spaces", None):
            user_spaces.load_file(args.spaces)
        return SUBCOMMANDS[args.command].run(args)

    return guarded("eznas", body)


# ----------------------------------------------------------------------------- shared arguments

def _add_sample(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--n", type=bounded(2, 100_000), default=200, help=f"networks to {what}, a seeded sample (default 200)")
    g.add_argument("--all", action="store_true", help=f"{what} every network of the task")


def _add_exclude_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude-run", metavar="RUN", help="leave out the networks evolution run RUN used (its directory, "
                                                        "or the .json record of a proxy it produced)")


# ----------------------------------------------------------------------------- info

def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", help="task id, e.g. nb201:cifar10 or nds:DARTS_in")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--arch", help="NB201 architecture string")
    g.add_argument("--index", type=int, help="architecture index in the benchmark file")
    add_data_dir(p)
    add_spaces(p)


@subcommand("info", "describe a task, or one architecture of it (params, accuracy)", _info_arguments)
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
            raise EznasError(f"--arch takes an NB201 arch string; for {task.name} use --index")
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


# ----------------------------------------------------------------------------- stats

def _stats_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task id, e.g. nb201:cifar10")
    _add_sample(p, "probe")
    p.add_argument("--seed", type=bounded(*SEED), default=0, help="sample seed (default 0)")
    _add_exclude_run(p)
    p.add_argument("--config", help="take the [probe] settings and run.retries / run.timeout from this run config "
                                    "(default: built-in defaults; --retries / --timeout override them)")
    add_parallel(p)
    add_data_dir(p)
    add_cache_dirs(p, scores=False)
    add_spaces(p)


@subcommand("stats", "fill the statistics cache for a task (resumable, with progress)", _stats_arguments)
def _stats(args: argparse.Namespace) -> int:
    from eznas import config
    from eznas.cache import StatsCache
    from eznas.evaluate import sample_records
    from eznas.pool import fill_cache
    from eznas.run import read_run

    cfg = config.load(args.config) if args.config else config.Config()
    parallel = parallel_of(args, Parallel(retries=cfg.run.retries, timeout=cfg.run.parallel.timeout))
    parallel.check()
    run = read_run(args.exclude_run, args.data_dir) if args.exclude_run else None
    records = sample_records(args.task, None if args.all else args.n, args.seed, args.data_dir, run)
    cache = StatsCache(args.cache_dir) if args.cache_dir else StatsCache()
    filled = fill_cache(args.task, records, cfg.probe, cache, parallel, args.data_dir)
    done, failed = len(filled.seconds), len(filled.failed)
    if failed and not done and all(r["index"] in filled.failed for r in records):
        raise EznasError(f"{args.task}: every one of the {failed} networks failed "
                         f"({next(iter(filled.failed.values()))}); fix the cause (see the warnings above)")
    print(f"{args.task}: {len(records)} networks, {done} computed, {failed} failed, "
          f"{len(records) - done - failed} already cached in {cache.root}")
    return 0


# ----------------------------------------------------------------------------- evolve

def _evolve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (TOML), e.g. experiments/default.toml")
    p.add_argument("--out", required=True, help="run directory (checkpoint written there every generation)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--seed", type=bounded(*SEED), help="override run.seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key, e.g. --set evolution.generations=5 (repeatable)")
    add_parallel(p, defaults_from_config=True)
    add_data_dir(p)
    add_cache_dirs(p, scores=False)


def _run_overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + ([f"run.seed={args.seed}"] if args.seed is not None else []) + parallel_overrides(args)


@subcommand("evolve", "launch or resume an evolution run", _evolve_arguments)
def _evolve(args: argparse.Namespace) -> int:
    from eznas import config, evolve
    from eznas import gp as programs

    cfg = config.load(args.config, _run_overrides(args))
    cfg.run.parallel.check()
    state = evolve.run(cfg, args.out, resume=args.resume, force=args.force, data_dir=args.data_dir, cache_dir=args.cache_dir)
    best = evolve.hall_of_fame(state.scored, 1)
    if best:
        b = best[0]
        print(f"best: {programs.infix(programs.parse(b['expr']))}")
        print("  pool tau: " + ", ".join(f"{t} {v:+.4f}" for t, v in b["taus"].items()) + f"; fitness {b['fitness']:+.4f}")
    return 0


# ----------------------------------------------------------------------------- inspect

def _inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--top", type=bounded(1, 1000), default=10, help="hall-of-fame rows to show (default 10)")
    p.add_argument("--policy", default="accuracy", choices=POLICIES, help="row marked >>>> (default accuracy)")
    p.add_argument("--no-heldout", action="store_true", help="skip held-out taus (they need held-out statistics)")
    p.add_argument("--raw", action="store_true", help="show the programs as evolved, not simplified (no sympy, no pool)")
    p.add_argument("--latex", action="store_true", help="also print each hall-of-fame formula as LaTeX")
    p.add_argument("--summary", action="store_true", help="print only the program --policy picks, as a formula, with "
                                                          "its held-out tau beside params, FLOPs, snip and naswot")
    add_data_dir(p)
    add_cache_dirs(p, scores=False)


@subcommand("inspect", "show the best programs and the Pareto front of a run", _inspect_arguments,
            description="Hall of fame and Pareto front of a run, with each program's mean tau on the run's validation "
                        "and held-out networks (cached in RUN/heldout.json). Policies mark one row with >>>>: "
                        "'accuracy' = highest pool fitness; 'parsimony' = smallest program within 0.01 of the highest "
                        "pool fitness; 'validation' = smallest program within 0.01 of the highest mean tau on the "
                        "validation tasks (tasks.validate), the published proxy's policy.")
def _inspect(args: argparse.Namespace) -> int:
    from eznas.report import inspect_run, summary

    if args.summary:
        if args.no_heldout or args.raw or args.latex:
            raise EznasError("--summary shows held-out taus and a verified formula: drop --no-heldout, --raw, --latex")
        print(summary(args.run, args.policy, args.data_dir, args.cache_dir))
        return 0
    print(inspect_run(args.run, top=args.top, policy=args.policy, heldout=not args.no_heldout,
                      data_dir=args.data_dir, cache_dir=args.cache_dir, formulas=not args.raw, latex=args.latex))
    return 0


# ----------------------------------------------------------------------------- export

def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="SOURCE", help="run directory, or an exported proxy's .json record (re-export it)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rank", type=bounded(0, 999), default=None, help="hall-of-fame rank to export (default 0, the best)")
    g.add_argument("--policy", choices=POLICIES, help="export the row this policy picks (see 'eznas inspect --help')")
    p.add_argument("-o", "--output", required=True, help="output .py file (its .json record is written beside it)")
    p.add_argument("--raw", action="store_true", help="state the program as evolved, not its simplified formula "
                                                      "(no sympy, no pool statistics)")
    add_data_dir(p)
    add_cache_dirs(p, scores=False)


@subcommand("export", "write a discovered program as a standalone Python proxy", _export_arguments)
def _export(args: argparse.Namespace) -> int:
    from eznas.export import export_run
    from eznas.report import chosen_rank
    from eznas.run import is_record

    if args.policy and is_record(args.run):
        raise EznasError(f"--policy: {args.run} is a record of one program; drop --policy")
    rank = chosen_rank(args.run, args.policy, args.data_dir, args.cache_dir) if args.policy else args.rank
    target, record, formula = export_run(args.run, rank, args.output, not args.raw, args.data_dir, args.cache_dir)
    print(f"wrote {target} and {record.name}: score = {formula}")
    return 0


# ----------------------------------------------------------------------------- prune

def _prune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="run directory, or the .json record of an exported proxy")
    p.add_argument("--rank", type=bounded(0, 999), default=None, help="hall-of-fame rank of a run to prune (default 0)")
    p.add_argument("--tolerance", type=bounded(0, 2, float), default=0.01,
                   help="pick the smallest program whose pool fitness is at most this below the start's (default 0.01)")
    p.add_argument("-o", "--output", help="export the pick as this .py proxy (its .json record beside it)")
    p.add_argument("--raw", action="store_true", help="with -o: state the program as pruned, not its simplified formula")
    add_data_dir(p)
    add_cache_dirs(p, scores=False)


@subcommand("prune", "shrink a program one subtree at a time, keeping its pool fitness", _prune_arguments,
            description="Greedy pruning on the run's evolution pools: each step puts one subtree in the place of a "
                        "node above it (same type), keeping the replacement with the highest pool fitness, down to "
                        "one node. Prints the path and marks with >>>> the smallest program within --tolerance of the "
                        "start's pool fitness; -o exports it. Pruning changes what a program computes: check the "
                        "pick on held-out networks (eznas evaluate, experiments/heldout.py).")
def _prune(args: argparse.Namespace) -> int:
    from eznas import config as config_mod
    from eznas import gp as programs
    from eznas.export import checked_output, write_proxy
    from eznas.prune import pick, pool_path, pruned_record
    from eznas.report import pool_batch, readable_forms
    from eznas.run import source_record
    from eznas.tables.runs import table

    source = Path(args.source)
    target = checked_output(args.output, source) if args.output else None
    record = source_record(source, args.rank)
    expr = record["expression"]
    cfg = config_mod.from_dict(record["config"], source=str(source))
    batch = pool_batch(source, args.data_dir, args.cache_dir)
    print(f"pruning a program of {len(programs.parse(expr))} nodes on the {batch.n_nets} pool networks of {source}",
          file=sys.stderr)
    path = pool_path(expr, batch, cfg.tasks.aggregate, cfg.tasks.relative_to)
    chosen = pick(path, args.tolerance)
    print(table([s.row() for s in path], path.index(chosen), {}))
    print(f"\n>>>> the smallest program within {args.tolerance} of the start's pool fitness {path[0].fitness:.4f}")
    if target is None:
        return 0
    formula = None if args.raw else readable_forms(source, [chosen.expr], args.data_dir, args.cache_dir)[chosen.expr]
    write_proxy(target, pruned_record(record, path[0], chosen, args.tolerance), formula)
    print(f"wrote {target} and {target.with_suffix('.json').name}: "
          f"score = {formula.text if formula else chosen.row()['infix']}")
    return 0


# ----------------------------------------------------------------------------- data

subcommand("data", "fetch the benchmark data, or check what is there", data_cmd.add_arguments,
           description="Fetch the benchmark data, or check what eznas finds.")(data_cmd.run)


# ----------------------------------------------------------------------------- evaluate

def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("proxy", metavar="PROXY", help="baseline name, path to a .py proxy file, or expression string")
    p.add_argument("--task", required=True, help="task id, e.g. nb201:cifar10 or nds:DARTS_in")
    _add_sample(p, "evaluate")
    p.add_argument("--seed", type=bounded(*SEED), default=0, help="sample and batch seed (default 0)")
    add_parallel(p)
    _add_exclude_run(p)
    p.add_argument("--compare", metavar="P1,P2,...", help="also score these proxies on the same networks and batch")
    p.add_argument("--out", metavar="PREFIX", help="write PREFIX.md and PREFIX.csv (default with --compare: "
                                                   "compare_<task>)")
    add_data_dir(p)
    add_cache_dirs(p)
    add_spaces(p)


@subcommand("evaluate", "score a proxy (baseline, exported .py file or expression) on a benchmark sample",
            _evaluate_arguments,
            description="Kendall tau-b, Spearman rho, top-10%% precision and median seconds per network of PROXY on a "
                        "seeded sample of TASK. PROXY is a baseline name (" + ", ".join(proxies.names()) + "), a .py "
                        "file defining score(net, inputs, targets) (imported and run: give trusted files only), the "
                        ".json record of an exported proxy, or a GP expression. Every proxy sees the same networks "
                        "(net seed 0) and the same batch of 64 images (seed --seed).")
def _evaluate(args: argparse.Namespace) -> int:
    from eznas.evaluate import evaluate
    from eznas.files import write_atomic
    from eznas.tables.evaluations import csv_table, markdown_table, paired_section, paired_table, summary
    from eznas.tasks import parse_task

    proxy_args = [args.proxy] + [p for p in (args.compare or "").split(",") if p.strip()]
    parallel = parallel_of(args)
    parallel.check()
    results = evaluate(proxy_args, args.task, None if args.all else args.n, args.seed, parallel,
                       args.exclude_run, args.data_dir, args.cache_dir, scores_dir=args.scores_dir)
    for e in results:
        print(summary(e))
    paired = paired_table({args.task: results})  # PROXY against the best baseline and params, if compared
    if paired:
        print("\n".join(["", f"tau of {results[0].proxy} minus a baseline's, 95% paired bootstrap interval:", *paired]))
    prefix = args.out or (f"compare_{parse_task(args.task).name.replace(':', '_')}" if args.compare else None)
    if prefix:
        md, csv_path = Path(f"{prefix}.md"), Path(f"{prefix}.csv")
        section = paired_section(results[0].proxy, paired)
        write_atomic(md, "\n".join([markdown_table(results), "", *section]) + "\n", fix="choose another --out prefix")
        write_atomic(csv_path, csv_table(results), fix="choose another --out prefix")
        print(f"wrote {md} and {csv_path}")
    return 0


# ----------------------------------------------------------------------------- search

def _search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proxy", required=True, help="baseline name, path to a .py proxy file, or expression string")
    p.add_argument("--task", required=True, help="task id, e.g. nb201:cifar10 (rea: NB201 tasks only)")
    p.add_argument("--strategy", default="rea", choices=STRATEGIES, help="search strategy (default rea)")
    p.add_argument("--budget", type=bounded(1, 100_000), default=1000, help="distinct architectures to score (default 1000)")
    p.add_argument("--seed", type=bounded(*SEED), default=0, help="seed of the search's random choices (default 0)")
    add_parallel(p)
    p.add_argument("--out", metavar="FILE.json", help="write the result, settings and every scored architecture")
    add_data_dir(p)
    add_cache_dirs(p)
    add_spaces(p)


@subcommand("search", "zero-shot NAS: random search or regularized evolution with a proxy as fitness", _search_arguments,
            description="Search TASK's benchmark space for the architecture PROXY scores highest (random search, or "
                        "regularized evolution on NB201 with population 64 and tournament 16) and report its true "
                        "test accuracy. Networks are scored on the evaluation protocol (net seed 0, batch of 64 "
                        "images with batch seed 0), sharing the score cache of 'eznas evaluate --seed 0'; --seed "
                        "only drives the search's random choices.")
def _search(args: argparse.Namespace) -> int:
    from eznas.files import write_atomic
    from eznas.search import search

    parallel = parallel_of(args)
    parallel.check()
    result = search(args.proxy, args.task, args.strategy, args.budget, args.seed, parallel, args.data_dir,
                    args.cache_dir, scores_dir=args.scores_dir)
    print(result.line())
    if args.out:
        write_atomic(args.out, json.dumps(result.to_dict(), indent=1) + "\n", fix="choose another --out")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
