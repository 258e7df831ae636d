"""Transfer folds: what a better choice among each fold's hall of fame could reach on its left-out family.

Every hall-of-fame program of each transfer fold is scored on the family it never saw, beside the programs
each choice policy picks and params/FLOPs.

    python experiments/transfer_oracle.py runs/transfer runs/transfer_parsimony runs/transfer_margin --n 200 --nds-n 100

Each RUNS holds the fold directories without-FAMILY that `experiments/transfer.py --runs RUNS` wrote. The
networks and batch are those transfer.py scores with the same --n/--nds-n/--seed, and the statistics come
from the cache. Printed per fold: mean tau-b over the family's tasks of the program each policy of
`eznas.report.choose` picks (transfer.py's folds take ``accuracy``, chosen on this table's evidence;
they took ``validation`` before), of the best and the median hall-of-fame program (the best is an
oracle: it looks at the left-out family), and the better of params and FLOPs (our own counts, on the
same networks). Last line: JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eznas import gp as programs
from eznas.cache import StatsCache
from eznas.errors import guarded
from eznas.evaluate import BATCH_SIZE, probe_config, sample_records, sample_size
from eznas.fitness import Evaluator, kendall_taus, reference_scores
from eznas.files import write_atomic
from eznas.options import Parser, add_cache_dirs, add_data_dir, bounded, command_line
from eznas.pool import load_pool
from eznas.report import POLICIES, chosen_rank
from eznas.run import read_checkpoint, read_run
from eznas.transfer import NAMES, family


def fold_taus(out: Path, n: int, whole_n: int, seed: int, data_dir: str | None, cache_dir: str | None) -> dict:
    """Per-program mean tau over the left-out family of fold ``out``, with the chosen rank and params/FLOPs."""
    left_out = out.name.removeprefix("without-")
    run = read_run(out, data_dir)
    cfg = run.config
    hof = [h["expr"] for h in read_checkpoint(out)["hall_of_fame"]]
    needs = set().union(*(programs.probe_needs(programs.parse(e)) for e in hof), {"log_params", "log_flops"})
    cache = StatsCache(cache_dir) if cache_dir else StatsCache()
    probe = probe_config(seed, BATCH_SIZE, run)  # transfer.py's networks and batch: evaluate's
    per_task = []
    for task in family(left_out).score:
        records = sample_records(task, sample_size(task, n, whole_n), seed, data_dir, run)
        batch = load_pool(task, records, probe, cache, cfg.run.parallel, data_dir, needs=needs)
        evaluator = Evaluator(batch)
        scores = np.stack([evaluator.safe_scores(programs.parse(e)) for e in hof])
        sizes = kendall_taus(reference_scores(batch, ("log_params", "log_flops")), batch.accuracy)
        per_task.append((kendall_taus(scores, batch.accuracy), sizes))
    taus = np.mean([t for t, _ in per_task], axis=0)
    size = float(np.mean([s for _, s in per_task], axis=0).max())
    chosen = {policy: float(taus[chosen_rank(out, policy, data_dir, cache_dir)]) for policy in POLICIES}
    return {"fold": left_out, **chosen, "best": float(taus.max()), "median": float(np.median(taus)),
            "params_flops": size, "programs": len(hof)}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table and, last, the figures as JSON."""
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="directories of transfer folds (each holding without-FAMILY runs)")
    parser.add_argument("--n", type=bounded(2, 100_000), default=200, help="NB201 networks per dataset (default 200)")
    parser.add_argument("--nds-n", type=bounded(2, 100_000), default=100, help="networks per other task (default 100)")
    parser.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0, help="sample seed (default 0)")
    add_data_dir(parser)
    add_cache_dirs(parser, scores=False)
    parser.add_argument("--out", default="results/transfer_oracle", help="output prefix: writes OUT.md (default results/transfer_oracle)")
    args = parser.parse_args(argv)
    columns = [*POLICIES, "best", "median", "params_flops"]
    lines = [f"| run | left-out family | {' | '.join(f'policy {p}' for p in POLICIES)} | best in hall of fame (oracle) "
             "| median of hall of fame | max(params, FLOPs) |", "|---|---|" + "---:|" * len(columns)]
    rows = []
    for runs in args.runs:
        for name in NAMES:
            out = Path(runs) / f"without-{name}"
            if out.is_dir():
                rows.append({"run": runs, **fold_taus(out, args.n, args.nds_n, args.seed, args.data_dir, args.cache_dir)})
                lines.append(f"| {runs} | {name} | " + " | ".join(f"{rows[-1][k]:.3f}" for k in columns) + " |")
                print(lines[-1], flush=True)
    lines.append("")
    for runs in args.runs:
        mine = [r for r in rows if r["run"] == runs]
        if mine:
            margin = {k: np.mean([r[k] - r["params_flops"] for r in mine]) for k in columns[:-1]}
            lines.append(f"- {runs}: mean over {len(mine)} folds against max(params, FLOPs): "
                         + ", ".join(f"{k} {v:+.3f}" for k, v in margin.items()))
    report = [f"# {__doc__.splitlines()[0]}", "", "Generated by `experiments/transfer_oracle.py`; regenerate with", "",
              f"    {command_line('transfer_oracle.py', argv)}", "", " ".join(__doc__.split("\n\n")[1].split()), "", " ".join(__doc__.split("\n\n")[3].split()), "",
              *lines, ""]
    write_atomic(f"{args.out}.md", "\n".join(report), fix="choose another --out prefix")
    print("\n".join(lines[-len(args.runs):]))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(guarded("transfer_oracle.py", main))
