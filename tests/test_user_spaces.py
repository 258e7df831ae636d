"""A user's own search space as a task (``user:NAME``): NB201 re-expressed through a user builder and CSV
gets exactly the built-in task's scores; bad declarations are one-line errors; a network the builder
fails on is left out with one warning; the space works in evolve, inspect, export, stats and search."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_DIR, needs_data, run_cli
from eznas import benchmarks, user_spaces
from eznas.cli import main
from eznas.errors import EznasError
from eznas.parallel import Parallel
from eznas.evaluate import evaluate_records
from eznas.proxy_spec import resolve

pytestmark = needs_data
N = 12
BUILDER = '''from eznas.spaces import nb201


def build(arch, num_classes):
    if "broken" in arch:
        raise RuntimeError("cannot build this one")
    return nb201.build(arch.replace("broken", ""), num_classes=num_classes)


not_callable = 3


def not_a_module(arch, num_classes):
    return "a network"
'''


def _space(tmp: Path, name: str = "again", builder: str = "nets_again:build", rows: list[dict] | None = None,
           n: int = N, **extra: object) -> Path:
    """A TOML file declaring NB201 CIFAR-10's first ``n`` architectures as a user space."""
    (tmp / "nets_again.py").write_text(BUILDER)
    if rows is None:
        rows = [{"arch": r["arch"], "accuracy": r["accuracy"]}
                for r in benchmarks.load_task("nb201:cifar10", DATA_DIR)[:n]]
    with open(tmp / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    (tmp / f"{name}.toml").write_text(f'[spaces.{name}]\nbuilder = "{builder}"\ntruth = "{name}.csv"\n{keys}')
    return tmp / f"{name}.toml"


@pytest.mark.slow
def test_a_user_space_scores_exactly_as_the_builtin_task(tmp_path: Path) -> None:
    user_spaces.load_file(_space(tmp_path, n=4))
    records = benchmarks.load_task("user:again")
    assert [r["arch"] for r in records] == [r["arch"] for r in benchmarks.load_task("nb201:cifar10", DATA_DIR)[:4]]
    proxies = ["params", "naswot", "n_add(log_params, log_grad_norm)"]
    results = {task: evaluate_records([resolve(p) for p in proxies], task, records, parallel=Parallel(jobs=1),
                                      data_dir=DATA_DIR, cache_dir=tmp_path / "cache", progress=False)
               for task in ("user:again", "nb201:cifar10")}
    for mine, builtin in zip(results["user:again"], results["nb201:cifar10"]):
        np.testing.assert_array_equal(mine.scores, builtin.scores)
        assert mine.failed == 0


@pytest.mark.parametrize("change, needle", [
    ({"builder": "no_such_module:build"}, "cannot import no_such_module"),
    ({"builder": "nets_again:not_callable"}, "has no function not_callable"),
    ({"builder": "nets_again:not_a_module"}, "returned a str"),
    ({"builder": "nets_again"}, "write it as 'module:function'"),
    ({"rows": [{"arch": "a", "acc": 1.0}]}, "has no column 'accuracy'"),
    ({"rows": [{"arch": "a", "accuracy": "high"}]}, "accuracy 'high' is not a number"),
    ({"rows": [{"arch": "a", "accuracy": 1.0}, {"arch": "a", "accuracy": 2.0}]}, "repeats row 2"),
    ({"images": "mnist"}, "images = 'mnist'"),
    ({"classes": 0}, "classes = 0"),
])
def test_bad_declarations_are_one_line_errors(tmp_path: Path, capsys, change: dict, needle: str) -> None:
    change = dict(change)
    rows = change.pop("rows", None)
    builder = change.pop("builder", "nets_again:build")
    path = _space(tmp_path, f"bad{abs(hash(needle)) % 10_000}", builder, rows, **change)
    assert main(["info", f"user:{path.stem}", "--spaces", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_an_undeclared_space_says_how_to_declare_it() -> None:
    with pytest.raises(EznasError, match=r"declare it in a \[spaces.nowhere\] table"):
        benchmarks.load_task("user:nowhere")


@pytest.mark.slow
def test_an_arch_that_fails_to_build_is_left_out_with_one_line(tmp_path: Path) -> None:
    rows = [{"arch": r["arch"] + ("broken" if i == 2 else ""), "accuracy": r["accuracy"]}
            for i, r in enumerate(benchmarks.load_task("nb201:cifar10", DATA_DIR)[:4])]
    path = _space(tmp_path, "partly", rows=rows)
    r = run_cli("stats", "--task", "user:partly", "--all", "--spaces", str(path), "--cache-dir", str(tmp_path / "c"),
                "--jobs", "1")
    assert r.returncode == 0, r.stderr
    assert "4 networks, 3 computed, 1 failed" in r.stdout
    assert r.stderr.count("user:partly #2 left out") == 1 and "Traceback" not in r.stderr


@pytest.mark.slow
def test_a_user_space_evolves_inspects_exports_and_searches(tmp_path: Path) -> None:
    space = _space(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text(space.read_text() + '''
[run]
seed = 3
n_jobs = 2
[tasks]
evolve = ["user:again", "nb201:cifar10"]
heldout = ["nb201:cifar100"]
pool_size = 6
sample_size = 5
heldout_size = 4
[probe]
batch_size = 8
features = 16
weight_rows = 8
weight_cols = 8
max_layers = 6
[evolution]
population = 10
generations = 1
tournament_size = 3
elites = 2
init_max_depth = 4
max_depth = 6
max_size = 20
hall_of_fame = 3
pool_fitness_top = 2
''')
    cache = str(tmp_path / "cache")
    r = run_cli("evolve", str(config), "--out", str(tmp_path / "run"), "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    assert "user:again" in json.loads((tmp_path / "run" / "checkpoint.json").read_text())["pools"]
    r = run_cli("inspect", str(tmp_path / "run"), "--cache-dir", cache, "--no-heldout", "--raw")
    assert r.returncode == 0 and "again" in r.stdout, r.stderr
    r = run_cli("export", str(tmp_path / "run"), "-o", str(tmp_path / "p.py"), "--cache-dir", cache)
    assert r.returncode == 0, r.stderr
    r = run_cli("search", "--proxy", "params", "--task", "user:again", "--strategy", "random", "--budget", "5",
                "--spaces", str(space), "--cache-dir", cache)
    assert r.returncode == 0 and "user:again random params" in r.stdout, r.stderr
    r = run_cli("evaluate", str(tmp_path / "p.json"), "--task", "user:again", "--all", "--exclude-run",
                str(tmp_path / "run"), "--spaces", str(space), "--cache-dir", cache)
    assert r.returncode == 0 and f"{N - 6} networks" in r.stdout, r.stderr  # the pool's 6 are left out
