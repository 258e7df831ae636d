"""Few-shot transfer: what k trained networks of a left-out family buy over the zero-shot proxy evolved without it.

    python experiments/few_shot.py --scores-dir results/scores  # results/few_shot.md

For each family of the leave-one-family-out protocol (`eznas.transfer.FAMILIES`) and each of its tasks,
on the networks and batch of results/transfer.md (--n per NB201 dataset, --nds-n per other task, net
seed 0, batch seed --seed), the candidates are: the program the first of --runs evolved without the
family (the zero-shot proxy of results/transfer.md, preferred on ties), the committee of every run's
program (`eznas.few_shot.rank_mean` over the sample) and the 13 baselines. `eznas.few_shot.simulate`
labels k random networks (--draws times), keeps the candidate with the best Kendall tau-b on them and
scores it on the rest; a family's figure is the mean over its tasks of the mean over draws.

Every score comes from the score cache (the committed results/scores holds those of the default
samples), so the table rewrites in a few minutes; a missing score is computed, as experiments/transfer.py
would.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eznas import proxies
from eznas.errors import EznasError, guarded
from eznas.evaluate import evaluate_tasks
from eznas.few_shot import Draws, kendall_tau, rank_mean, simulate
from eznas.files import write_atomic
from eznas.options import Parser, add_sample_args, bounded, command_line, parallel_of
from eznas.parallel import Parallel
from eznas.tables.transfer import SIZE_BASELINES
from eznas.transfer import FAMILIES

RUNS = ("results/proxies/transfer", "results/proxies/transfer_parsimony", "results/proxies/transfer_margin",
        "results/proxies/transfer_parsimony_seed1")  # the four transfer runs of results/transfer_oracle.md
ZERO_SHOT = "evolved without it"
KS = (5, 10, 20, 40)


def family_scores(runs: Sequence[Path], name: str, tasks: Sequence[str], n: int, whole_n: int | None, seed: int,
                  parallel: Parallel, dirs: dict[str, str | None]) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """Per task of the family ``name``: candidate -> scores over the task's sample, and the sample's accuracies."""
    records = [run / f"without-{name}.json" for run in runs]
    if missing := [str(r) for r in records if not r.exists()]:
        raise EznasError(f"{missing[0]} does not exist: no program evolved without {name} in that run")
    *_, (_, results) = evaluate_tasks([*map(str, records), *proxies.names()], tasks, n, whole_n, seed, parallel, **dirs)
    out = {}
    for task, evals in results.items():
        programs = [e.scores for e in evals[:len(runs)]]
        scores = {ZERO_SHOT: programs[0], f"committee of {len(runs)} runs": rank_mean(programs),
                  **{e.proxy: e.scores for e in evals[len(runs):]}}
        out[task] = (scores, evals[0].accuracy)
    return out


def family_means(per_task: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each key's mean over a family's tasks."""
    return {key: float(np.mean([row[key] for row in per_task])) for key in per_task[0]}


def fold_figures(tasks: dict[str, tuple[dict[str, np.ndarray], np.ndarray]], ks: Sequence[int], draws: int,
                 seed: int) -> tuple[dict[str, float], dict[int, Draws]]:
    """A family's figures (zero-shot taus over the whole samples; per k the chosen proxy's, the bound's and the
    size baselines' taus on the rest) and the draws at each k of its first task."""
    rows, first = [], {}
    for task, (scores, accuracy) in tasks.items():
        row = {name: kendall_tau(values, accuracy) for name, values in scores.items()}
        for k in ks:
            result = simulate(scores, accuracy, k, draws, seed)
            first.setdefault(k, result)
            row[f"chosen@{k}"] = float(np.nanmean(result.chosen))
            row[f"bound@{k}"] = float(np.nanmean(result.oracle))
            row[f"size@{k}"] = max(float(np.nanmean(result.rest[b])) for b in SIZE_BASELINES)
        rows.append(row)
    return family_means(rows), first


def report(figures: dict[str, dict[str, float]], picks: dict[str, dict[str, float]], pick_k: int, committee: str,
           ks: Sequence[int], command: str, draws: int) -> str:
    """The markdown report: per family the zero-shot and few-shot taus, their margins over params/FLOPs, the picks."""
    head = ["left-out family", ZERO_SHOT + " (zero-shot)", committee, "params", "FLOPs",
            *[f"chosen with k={k}" for k in ks], f"best candidate on the rest, k={ks[0]} (bound)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    margins: dict[str, list[float]] = {h: [] for h in head[1:]}
    for name, f in figures.items():
        size = max(f[b] for b in SIZE_BASELINES)
        cells = [f[ZERO_SHOT], f[committee], f["params"], f["flops"], *[f[f"chosen@{k}"] for k in ks], f[f"bound@{ks[0]}"]]
        bases = [size, size, size, size, *[f[f"size@{k}"] for k in ks], f[f"size@{ks[0]}"]]
        for h, c, b in zip(head[1:], cells, bases):
            margins[h].append(c - b)
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    lines.append("| mean over folds, minus max(params, FLOPs) on the same networks | "
                 + " | ".join(f"{np.mean(m):+.3f}" for m in margins.values()) + " |")
    shares = [f"| {name} | " + ", ".join(f"`{p}` {s:.0%}" for p, s in list(share.items())[:3]) + " |"
              for name, share in picks.items()]
    doc = __doc__.split("\n\n")
    return "\n".join([f"# {doc[0].splitlines()[0]}", "", "Generated by `experiments/few_shot.py`; regenerate with", "",
                      f"    {command}", "", " ".join(doc[2].split()), "", " ".join(doc[3].split()), "",
                      "Zero-shot columns: Kendall tau-b over each task's whole sample (a failed network ranked lowest), "
                      "mean over the family's tasks. Chosen columns: the chosen candidate's tau-b on the networks outside "
                      f"the k labelled ones, mean over {draws} draws and over the family's tasks; their margin row is "
                      "over max(params, FLOPs) on the same networks. The bound takes, in each draw, the candidate that "
                      "is best on the very networks it is judged on.", "", *lines, "",
                      f"## Most chosen with k={pick_k} (first task of each family)", "", "| left-out family | picks |",
                      "|---|---|", *shares, ""])


def main(argv: Sequence[str] | None = None) -> int:
    """Score (or read from the cache) every candidate on each left-out family, simulate, write the report."""
    parser = Parser(description=__doc__.splitlines()[0])
    add_sample_args(parser, (), "results/few_shot")
    parser.set_defaults(n=200, nds_n=100)
    parser.add_argument("--runs", default=",".join(RUNS),
                        help="comma-separated directories of exported fold programs (without-FAMILY.json); the first "
                             "is the zero-shot proxy, all of them the committee (default: the four transfer runs)")
    parser.add_argument("--ks", default=",".join(map(str, KS)), help=f"labelled networks per draw (default {KS})")
    parser.add_argument("--draws", type=bounded(1, 100_000), default=200, help="random draws per k (default 200)")
    args = parser.parse_args(argv)
    if args.space_n:
        parser.error("--space-n is not used here: the families' samples are --n and --nds-n")
    try:
        ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        parser.error(f"--ks {args.ks!r}: give comma-separated integers")
    pick_k = ks[min(1, len(ks) - 1)]  # the picks table shows the second k (k=10 by default)
    runs = [Path(r) for r in args.runs.split(",") if r]
    parallel = parallel_of(args)
    parallel.check()
    committee = f"committee of {len(runs)} runs"
    dirs = {"data_dir": args.data_dir, "cache_dir": args.cache_dir, "scores_dir": args.scores_dir}
    figures, picks = {}, {}
    for f in FAMILIES:
        tasks = family_scores(runs, f.name, f.score, args.n, args.nds_n, args.seed, parallel, dirs)
        smallest = min(len(acc) for _, acc in tasks.values())
        if bad := [k for k in ks if not 2 <= k <= smallest - 2]:
            parser.error(f"--ks {bad[0]}: between 2 and {smallest - 2} for {f.name}'s samples of {smallest} networks")
        figures[f.name], draws = fold_figures(tasks, ks, args.draws, args.seed)
        picks[f.name] = draws[pick_k].pick_share()
        print(f"{f.name}: zero-shot {figures[f.name][ZERO_SHOT]:.3f}, "
              + ", ".join(f"k={k} {figures[f.name][f'chosen@{k}']:.3f}" for k in ks), flush=True)
    text = report(figures, picks, pick_k, committee, ks, command_line("few_shot.py", argv), args.draws)
    write_atomic(f"{args.out}.md", text, fix="choose another --out prefix")
    print(f"wrote {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(guarded("few_shot.py", main))
