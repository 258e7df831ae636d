"""Tests for `eznas.search` (``eznas search``): random search picks the proxy's best sampled
architecture, regularized evolution is seeded and deterministic, its mutation changes exactly one
edge, the budget counts distinct scored architectures (sharing evaluate's score cache), --jobs does
not change results, bad input is one line with exit status 2, and the JSON output."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import eznas.evaluate as ev
from eznas import benchmarks, search as se
from eznas.errors import EznasError
from eznas.parallel import Parallel
from eznas.proxy_spec import resolve
from eznas.scores import SCORES_DIR, ScoreCache
from eznas.spaces import build_network, count_params
from eznas.spaces.nb201 import OPS, parse_arch

from conftest import run_cli

SMALL_TASK = "nb201:ImageNet16-120"  # the cheapest NB201 layout (16x16 inputs)
REA_SMALL = {"population": 8, "tournament": 3}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One score cache for the module (scores of params/flops do not depend on the search)."""
    return tmp_path_factory.mktemp("search_cache")


def _search(data_dir: Path, cache: Path, **kwargs) -> se.SearchResult:
    kwargs.setdefault("proxy", "params")
    kwargs.setdefault("task", SMALL_TASK)
    kwargs.setdefault("seed", 0)
    if kwargs.get("strategy") == "rea":
        for k, v in REA_SMALL.items():
            kwargs.setdefault(k, v)
    return se.search(data_dir=data_dir, cache_dir=cache, progress=False, **kwargs)


# ----------------------------------------------------------------------------- random search

def test_random_search_selects_the_sampled_architecture_with_most_parameters(data_dir: Path,
                                                                             shared_cache: Path) -> None:
    result = _search(data_dir, shared_cache, strategy="random", budget=25, seed=3)
    sample = benchmarks.sample(SMALL_TASK, 25, 3, data_dir)
    params = {r["index"]: count_params(build_network(SMALL_TASK, r["arch"], device="meta")) for r in sample}
    best = max(params, key=lambda i: (params[i], -i))  # ties: lowest index
    assert result.index == best and result.score == params[best]
    assert result.arch == benchmarks.arch_string(best, data_dir)
    records = benchmarks.load_task(SMALL_TASK, data_dir)
    assert result.accuracy == records[best]["accuracy"]
    accs = np.array([r["accuracy"] for r in records])
    assert result.best_accuracy == accs.max()
    assert result.percentile == pytest.approx(100 * np.mean(accs <= result.accuracy))
    assert [i for i, _ in result.scored] == [r["index"] for r in sample] and result.n_scored == 25
    assert result.cycles == 0 and result.population is None


# ----------------------------------------------------------------------------- regularized evolution

def test_mutation_changes_exactly_one_edge_to_another_op(data_dir: Path) -> None:
    rng = np.random.default_rng(0)
    records = benchmarks.load_task(SMALL_TASK, data_dir)
    table = {r["arch"]: r["index"] for r in records}
    changed_edges, new_ops = set(), set()
    for i in rng.choice(len(records), 300, replace=False):
        arch = records[int(i)]["arch"]
        child = se.mutate(arch, rng)
        parse_arch(child)
        assert child in table  # every NB201 cell is a benchmark architecture
        before, after = se.edges(arch), se.edges(child)
        diff = [k for k in range(6) if before[k] != after[k]]
        assert len(diff) == 1
        changed_edges.add(diff[0])
        new_ops.add(after[diff[0]])
        assert se.arch_from_edges(before) == arch
    assert changed_edges == set(range(6)) and new_ops == set(OPS)


def test_rea_is_deterministic_for_a_seed_and_differs_across_seeds(data_dir: Path, shared_cache: Path) -> None:
    a = _search(data_dir, shared_cache, strategy="rea", budget=20, seed=1)
    b = _search(data_dir, shared_cache, strategy="rea", budget=20, seed=1)
    c = _search(data_dir, shared_cache, strategy="rea", budget=20, seed=2)
    assert a.scored == b.scored and a.index == b.index and a.cycles == b.cycles
    assert [i for i, _ in a.scored] != [i for i, _ in c.scored]
    for r in (a, c):  # the selection is the best-scored architecture ever seen
        assert r.index == max(r.scored, key=lambda t: (t[1], -t[0]))[0]
    assert a.population == 8 and a.tournament == 3


def test_budget_counts_distinct_architectures_scored_once_each(data_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = ev.score_network

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(ev, "score_network", counting)
    result = _search(data_dir, tmp_path, strategy="rea", budget=20, seed=4)
    indices = [i for i, _ in result.scored]
    assert result.n_scored == 20 == len(set(indices)) == len(calls)  # each new network scored once, fresh cache
    assert result.cycles >= 20 - 8  # the cycles after the initial population of 8; revisits are free
    # the scores went to evaluate's cache (net seed 0, batch seed 0): evaluate --seed 0 reuses them
    cache = ScoreCache(tmp_path / SCORES_DIR, resolve("params"), SMALL_TASK, ev.NET_SEED, 0, ev.BATCH_SIZE)
    assert all(cache.get(i)["value"] == s for i, s in result.scored)
    times = [cache.get(i)["seconds"] for i, _ in result.scored]
    assert result.score_seconds == pytest.approx(len(times) * np.median(times))
    calls.clear()
    again = _search(data_dir, tmp_path, strategy="rea", budget=20, seed=4)
    assert again.scored == result.scored and not calls
    assert again.score_seconds == result.score_seconds > 0  # the cost of the scores, not of this (cached) run
    assert f"proxy time {result.score_seconds:.0f} s" in result.line()
    untimed = dataclasses.replace(result, score_seconds=math.nan)  # no network had a timing
    assert "proxy time unknown" in untimed.line() and untimed.to_dict()["score_seconds"] is None
    small = _search(data_dir, tmp_path, strategy="rea", budget=5, seed=4)  # below the population size
    assert small.n_scored == 5 and small.cycles == 0


@pytest.mark.slow
def test_jobs_do_not_change_the_result(data_dir: Path, tmp_path: Path) -> None:
    one = _search(data_dir, tmp_path / "one", strategy="rea", budget=12, seed=5, parallel=Parallel(jobs=1))
    two = _search(data_dir, tmp_path / "two", strategy="rea", budget=12, seed=5, parallel=Parallel(jobs=2))
    assert one.scored == two.scored and one.index == two.index


def test_api_rejects_bad_input_with_one_line_errors(data_dir: Path, tmp_path: Path) -> None:
    for kwargs, message in [({"strategy": "grid", "budget": 5}, "unknown strategy"),
                            ({"strategy": "rea", "budget": 5, "task": "nds:DARTS_in"}, "not an NB201 task"),
                            ({"strategy": "random", "budget": 0}, "at least 1"),
                            ({"strategy": "random", "budget": 15626}, "exceeds the 15625 architectures"),
                            ({"strategy": "random", "budget": 5, "proxy": "snipp"}, "unknown proxy")]:
        with pytest.raises(EznasError, match=message) as info:
            _search(data_dir, tmp_path, **kwargs)
        assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- command

@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--proxy", "snipp", "--strategy", "random", "--budget", "5"], "unknown proxy 'snipp'"),
    (["--proxy", "params", "--task", "nds:DARTS_in", "--strategy", "rea"], "not an NB201 task"),
    (["--proxy", "params", "--budget", "0"], "--budget: 0 is out of range"),
    (["--proxy", "params", "--strategy", "random", "--budget", "20000"], "exceeds the 15625"),
])
def test_command_bad_input_is_one_line_and_exit_status_2(data_dir: Path, tmp_path: Path, args: list[str],
                                                        message: str) -> None:
    args = ["search", *args] if "--task" in args else ["search", "--task", SMALL_TASK, *args]
    proc = run_cli(*args, "--cache-dir", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"eznas( search)?: error: ", lines[0]) and message in lines[0]


@pytest.mark.slow
def test_command_prints_the_selection_and_writes_json(data_dir: Path, shared_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "result.json"
    proc = run_cli("search", "--proxy", "flops", "--task", SMALL_TASK, "--strategy", "random", "--budget", "10",
                   "--seed", "7", "--cache-dir", str(shared_cache), "--out", str(out), timeout=120,
                   env={"OMP_NUM_THREADS": "1"})  # one torch thread: two oversubscribe a busy 2-core machine
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    for key in ("task", "proxy", "proxy_arg", "strategy", "budget", "seed", "jobs", "index", "arch", "score",
                "accuracy", "best_accuracy", "percentile", "n_scored", "cycles", "wall_seconds", "score_seconds",
                "scored", "protocol"):
        assert key in doc, key
    assert (doc["task"], doc["proxy"], doc["strategy"], doc["budget"], doc["seed"]) == (SMALL_TASK, "flops", "random",
                                                                                        10, 7)
    assert doc["n_scored"] == len(doc["scored"]) == 10
    assert doc["protocol"] == {"net_seed": 0, "batch_seed": 0, "batch_size": 64}
    assert doc["index"] == benchmarks.arch_index(doc["arch"], data_dir)
    assert doc["score"] == max(s for _, s in doc["scored"])
    assert math.isfinite(doc["wall_seconds"]) and doc["score_seconds"] > 0 and 0 < doc["percentile"] <= 100
    line = proc.stdout.splitlines()[0]
    assert line.startswith(f"{SMALL_TASK} random flops (budget 10, seed 7): #{doc['index']} {doc['arch']}")
    assert f"test accuracy {doc['accuracy']:.2f}%" in line and "percentile" in line
