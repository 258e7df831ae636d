"""Faults during a run: a statistics or fitness worker that raises, or is killed, mid-run.

Injection. The CLI runs in a subprocess, as a user runs it, through `fault_plan.main` (tests/
fault_plan.py): it swaps eznas's two job functions for wrappers that raise or SIGKILL their own
worker process when a JSON fault plan (named by ``$EZNAS_FAULT_PLAN``) says so, then calls
`eznas.cli.main`. Jobs name their function by module, so loky's worker processes run the same
wrappers and die for real; the plan's call counters are files, shared by all processes. eznas
itself has no test hook: nothing in the package reads the plan. The per-program fallback of
`pool_scores` (a chunk that keeps failing) is checked in-process on the threading
backend, with a monkeypatched chunk function: fast, and it compares every fitness value.

A failure that succeeds on retry leaves the run's hall of fame and population exactly those of
a clean run; a network whose statistics always fail is left out of the pool, with one line
naming it; a program whose fitness job always fails gets the worst fitness, with one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, needs_data, run_cli, tiny_config
from eznas import benchmarks, config as config_mod, evolve
from eznas.cache import StatsCache
from eznas.fitness import WORST, fitness_of
from eznas.pool import load_pool, network_key
from eznas.resident import Resident
from eznas.run import derive_seed

pytestmark = [needs_data, pytest.mark.slow]  # workers raising and killed mid-run

TASK = "nb201:cifar10"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faults")
    (root / "tiny.toml").write_text(tiny_config(population=16))
    return {"root": root, "config": root / "tiny.toml", "cache": root / "cache"}


@pytest.fixture(scope="module")
def clean(ws) -> dict:
    """The checkpoint of a clean run (its statistics fill the shared cache)."""
    r = run_cli("evolve", str(ws["config"]), "--out", str(ws["root"] / "clean"), "--cache-dir", str(ws["cache"]))
    assert r.returncode == 0, r.stderr
    return json.loads((ws["root"] / "clean" / "checkpoint.json").read_text())


def _faulty_evolve(ws, name: str, plan: list[dict], cache: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``eznas evolve`` with the fault ``plan``; returns the process and its checkpoint."""
    work = ws["root"] / name
    work.mkdir()
    (work / "plan.json").write_text(json.dumps(plan))
    out = work / "run"
    r = run_cli("evolve", str(ws["config"]), "--out", str(out), "--cache-dir", str(cache),
                env={"EZNAS_FAULT_PLAN": str(work / "plan.json"), "PYTHONPATH": str(REPO / "tests")},
                entry=("-c", "import fault_plan; fault_plan.main()"))
    assert r.returncode == 0, r.stderr
    return r, json.loads((out / "checkpoint.json").read_text())


def _pool_records(ws) -> list[dict]:
    """The benchmark records of the run's pool, as `eznas.evolve.evolution_pools` samples them."""
    cfg = config_mod.load(ws["config"])
    records = benchmarks.sample(TASK, cfg.tasks.pool_size, derive_seed(cfg.run.seed, "pool", TASK))
    return sorted(records, key=lambda r: r["index"])


def _copy_cache_without(ws, name: str, records: list[dict]) -> Path:
    """A copy of the shared cache lacking the statistics of ``records`` (so they are computed)."""
    cache = ws["root"] / f"cache_{name}"
    shutil.copytree(ws["cache"], cache)
    probe = config_mod.load(ws["config"]).probe
    for r in records:
        StatsCache(cache).path(network_key(TASK, r["arch"], probe)).unlink()
    return cache


@pytest.mark.parametrize("mode, logged", [("raise", "attempt 1 of 3 failed, retrying: RuntimeError: injected fault"),
                                          ("kill", "worker process died (exit codes {SIGKILL(-9)}) while it ran "
                                                   "beside other jobs; rerunning it alone")])
def test_fitness_worker_failing_once_mid_run_leaves_the_results_of_a_clean_run(ws, clean, mode, logged):
    # generation 0 has two fitness chunks (calls 0, 1): the fault hits generation 1's first chunk
    r, ckpt = _faulty_evolve(ws, f"fitness_{mode}", [{"job": "fitness", "mode": mode, "skip": 2, "times": 1}],
                             ws["cache"])
    assert logged in r.stderr and "gen    2" in r.stdout
    assert ckpt["hall_of_fame"] == clean["hall_of_fame"]
    assert ckpt["population"] == clean["population"] and ckpt["fitness"] == clean["fitness"]


def test_statistics_workers_raising_and_killed_once_leave_the_results_of_a_clean_run(ws, clean):
    cache = _copy_cache_without(ws, "stats_once", _pool_records(ws)[:4])
    plan = [{"job": "stats", "mode": "raise", "skip": 1, "times": 1},
            {"job": "stats", "mode": "kill", "skip": 3, "times": 1}]
    r, ckpt = _faulty_evolve(ws, "stats_once", plan, cache)
    assert f"({TASK} #" in r.stderr and "RuntimeError: injected fault" in r.stderr
    assert "worker process died (exit codes {SIGKILL(-9)})" in r.stderr
    assert "left out" not in r.stderr
    assert ckpt["pools"] == clean["pools"]
    assert ckpt["hall_of_fame"] == clean["hall_of_fame"] and ckpt["population"] == clean["population"]


def test_network_whose_statistics_always_fail_is_left_out_of_the_pool(ws, clean):
    records = _pool_records(ws)
    bad = records[2]
    cache = _copy_cache_without(ws, "stats_always", [bad])
    r, ckpt = _faulty_evolve(ws, "stats_always", [{"job": "stats", "mode": "raise", "times": -1, "match": bad["arch"]}],
                             cache)
    left_out = [line for line in r.stderr.splitlines() if "left out" in line]
    assert len(left_out) == 1
    assert left_out[0].startswith(f"{TASK} #{bad['index']} left out after 3 attempts: RuntimeError: injected fault")
    assert ckpt["pools"] == {TASK: [x["index"] for x in records if x is not bad]}
    assert "pools: nb201:cifar10 5 nets" in r.stdout and "gen    2" in r.stdout


@pytest.fixture(scope="module")
def pool(ws, clean):
    """The clean run's pool, from the cache (nothing computed)."""
    cfg = config_mod.load(ws["config"])
    return load_pool(TASK, _pool_records(ws), cfg.probe, StatsCache(ws["cache"]), progress=False)


def test_program_whose_fitness_job_always_fails_gets_the_worst_fitness(ws, clean, pool, monkeypatch, caplog):
    """Chunks holding ``log_params`` keep failing: their programs are evaluated one per job, the
    ``log_params`` ones get WORST (one line each), the others their clean scores, whatever n_jobs."""
    texts = clean["population"]
    poisoned = [t for t in texts if "log_params" in t]
    assert 0 < len(poisoned) < len(texts)
    resident = Resident(pool.digest(), pool)
    cfg = config_mod.load(ws["config"], ['run.backend="threading"'])
    expected = evolve.pool_scores(texts, resident, cfg)
    real = evolve._evaluate_chunk

    def failing(evaluator, chunk):
        if any("log_params" in t for t in chunk):
            raise RuntimeError("injected fault")
        return real(evaluator, chunk)

    monkeypatch.setattr(evolve, "_evaluate_chunk", failing)
    for n_jobs in (1, 2, 3):
        caplog.clear()
        cfg = config_mod.load(ws["config"], ['run.backend="threading"', f"run.n_jobs={n_jobs}", "run.retries=1"])
        scores = evolve.pool_scores(texts, resident, cfg)
        fits = fitness_of(scores, pool.accuracy, pool.task)
        for t, row, f, e in zip(texts, scores, fits, expected):
            if t in poisoned:
                assert f.value == WORST and not f.valid and set(f.taus) == {TASK}
            else:
                assert np.array_equal(row, e, equal_nan=True)
        worst = [r.getMessage() for r in caplog.records if "gets the worst fitness" in r.getMessage()]
        assert len(worst) == len(poisoned)
        for t in poisoned:
            assert any(w.startswith(f"program {t} gets the worst fitness: its job failed on all 2 attempts: "
                                    "RuntimeError: injected fault") for w in worst)
