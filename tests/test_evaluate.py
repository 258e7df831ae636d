"""Tests for `eznas.evaluate`: sanity of the baselines on 200 NB201 CIFAR-10 networks, file and
expression proxies (an exported file scores what the engine scores), the score cache (reuse,
resume, file identity), failures counted, evolution networks excluded, one-line errors for bad
PROXY arguments, and the command's tables."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

import eznas.evaluate as ev
import eznas.pool as pool_module
from eznas import benchmarks, config
from eznas.errors import EznasError
from eznas.parallel import Parallel
from eznas.cli import main
from eznas.proxy_spec import resolve
from eznas.run import CHECKPOINT, CHECKPOINT_VERSION
from eznas.scores import SCORES_DIR, ScoreCache
from eznas.export import export_source
from eznas.probe import ProbeSettings
from eznas.proxies import az_nas

SMALL_TASK = "nb201:ImageNet16-120"  # the cheapest NB201 layout (16x16 inputs)
RCOR = "logdet_sum(gram_add(gram_abs(corr(A)), gram_abs(corr(G))))"
PARAMS_FILE = """\
import torch


def score(net, inputs, targets):
    \"\"\"Parameter count (a hand-written proxy file).\"\"\"
    return float(sum(p.numel() for p in net.parameters()))
"""
FLAKY_FILE = """\
def score(net, inputs, targets):
    \"\"\"Parameter count, but it raises or returns inf on two thirds of the networks.\"\"\"
    n = sum(p.numel() for p in net.parameters())
    if n % 3 == 0:
        raise RuntimeError("multiple of three")
    if n % 3 == 1:
        return float("inf")
    return float(n)
"""


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def _evaluate(proxy_args: list[str], data_dir: Path, cache: Path, **kwargs) -> list[ev.Evaluation]:
    kwargs.setdefault("task", SMALL_TASK)
    kwargs.setdefault("n", 4)
    kwargs.setdefault("batch_size", 16)
    return ev.evaluate(proxy_args, data_dir=data_dir, cache_dir=cache, progress=False, **kwargs)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------- sanity

def test_median_seconds_leaves_out_unknown_timings() -> None:
    assert ev.median_known([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert ev.median_known(np.array([4.0, math.inf, 1.0])) == 2.5
    assert math.isnan(ev.median_known([math.nan, math.nan])) and math.isnan(ev.median_known([]))


@pytest.mark.slow
def test_sanity_on_nb201_cifar10_networks(data_dir: Path, tmp_path: Path) -> None:
    """Params/FLOPs Kendall tau within 0.1 of the published 0.59-0.62 on 100 networks; NASWOT and synflow
    rank positively on 80. Params, FLOPs and synflow do not depend on the batch; NASWOT sees 16
    of the protocol's 64 images here to keep the test fast."""
    two = Parallel(jobs=2)
    results = [*_evaluate(["params", "flops"], data_dir, tmp_path, task="nb201:cifar10", n=100, seed=0, parallel=two),
               *_evaluate(["synflow", "naswot"], data_dir, tmp_path, task="nb201:cifar10", n=80, seed=0, parallel=two)]
    by_name = {e.proxy: e for e in results}
    for e in results:
        print(f"{e.proxy}: n={len(e.scores)} failed={e.failed} tau={e.kendall_tau:.4f} rho={e.spearman_rho:.4f}")
        assert len(e.scores) == (100 if e.proxy in ("params", "flops") else 80)
    for name in ("params", "flops"):
        assert by_name[name].failed == 0
        assert 0.59 - 0.1 <= by_name[name].kendall_tau <= 0.62 + 0.1
    for name in ("synflow", "naswot"):
        assert by_name[name].failed <= 8  # disconnected cells (zero output) are the only failures
        assert by_name[name].spearman_rho > 0.3


# ----------------------------------------------------------------------------- proxy kinds

def test_exported_file_scores_what_the_engine_scores_for_its_expression(data_dir: Path, tmp_path: Path) -> None:
    exported = _write(tmp_path / "rcor.py", export_source(RCOR, ProbeSettings(), {"test": True}))
    by_file, by_engine = _evaluate([exported, RCOR], data_dir, tmp_path / "cache", n=3)
    assert by_file.proxy == "rcor.py" and by_engine.proxy.startswith("logdet_sum(")
    np.testing.assert_array_equal(by_file.index, by_engine.index)
    np.testing.assert_allclose(by_file.scores, by_engine.scores, rtol=1e-4)
    assert by_file.failed == by_engine.failed == 0
    assert np.all(np.isfinite(by_engine.seconds))  # the probe was timed, since this call computed the statistics


def test_an_expression_probes_only_the_statistics_it_reads(data_dir: Path, tmp_path: Path) -> None:
    """Scoring RCor (A and G only) computes no Hessian-vector product and stores no other statistic,
    and scores what it scores from a cache holding every statistic."""
    from eznas.cache import StatsCache

    (lean,) = _evaluate([RCOR], data_dir, tmp_path / "lean", n=3)
    stats = StatsCache(tmp_path / "lean")
    held = [stats.holds(p.stem) for p in (tmp_path / "lean").rglob("*.safetensors")]
    assert len(held) == 3 and all({"A", "G", "depth"} <= h and not {"H", "KS", "naswot"} & h for h in held)
    full_cache = tmp_path / "full"
    pool_module.fill_cache(SMALL_TASK, benchmarks.sample(SMALL_TASK, 3, 0, data_dir),
                           ProbeSettings(batch_size=16), StatsCache(full_cache), data_dir=data_dir, progress=False)
    (full,) = _evaluate([RCOR], data_dir, full_cache, n=3)
    np.testing.assert_array_equal(lean.index, full.index)
    np.testing.assert_array_equal(lean.scores, full.scores)


def test_set_level_baseline_is_rank_aggregated_over_the_evaluated_set(data_dir: Path, tmp_path: Path) -> None:
    (result,) = _evaluate(["az_nas"], data_dir, tmp_path, n=5)
    cache = ScoreCache(tmp_path / SCORES_DIR, resolve("az_nas"), SMALL_TASK, 0, 0, 16)
    components = [cache.get(int(i))["value"] for i in result.index]
    assert set(components[0]) == set(az_nas.COMPONENTS)
    np.testing.assert_allclose(result.scores, az_nas.rank_aggregate(components))


# ----------------------------------------------------------------------------- cache

def test_scores_are_cached_reused_and_resumed(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _write(tmp_path / "params_proxy.py", PARAMS_FILE)
    (first,) = _evaluate([proxy], data_dir, tmp_path / "cache", n=4)
    calls: list[int] = []
    original = ev.score_network

    def counting(*args):
        calls.append(len(args[4]))
        return original(*args)

    monkeypatch.setattr(ev, "score_network", counting)
    (again, _) = _evaluate([proxy, "params"], data_dir, tmp_path / "cache", n=4)
    assert len(calls) == 4 and set(calls) == {1}  # only the new proxy ran, on each network
    np.testing.assert_array_equal(first.scores, again.scores)
    calls.clear()
    (longer, _) = _evaluate([proxy, "params"], data_dir, tmp_path / "cache", n=6)
    assert len(calls) == 2  # a larger sample with the same seed extends the smaller one
    np.testing.assert_array_equal(longer.scores[np.isin(longer.index, first.index)], first.scores)
    calls.clear()
    Path(proxy).write_text(PARAMS_FILE.replace("float(sum(", "-float(sum("))  # a new file version: new identity
    (changed,) = _evaluate([proxy], data_dir, tmp_path / "cache", n=4)
    assert len(calls) == 4
    np.testing.assert_array_equal(changed.scores, -first.scores)


def test_a_corrupt_score_cache_is_recomputed_with_a_warning(data_dir: Path, tmp_path: Path) -> None:
    (first,) = _evaluate(["params"], data_dir, tmp_path, n=3)
    (path,) = (tmp_path / SCORES_DIR).glob("*.json")
    json.loads(path.read_text())  # the cache is plain JSON
    path.write_text("{ not json")
    with pytest.warns(UserWarning, match="unreadable"):
        (again,) = _evaluate(["params"], data_dir, tmp_path, n=3)
    np.testing.assert_array_equal(first.scores, again.scores)
    doc = json.loads(path.read_text())
    index = next(iter(doc["entries"]))
    doc["entries"][index]["value"] = "1e9"  # an entry of the wrong type: dropped, that network rescored
    path.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="1 damaged entries"):
        (third,) = _evaluate(["params"], data_dir, tmp_path, n=3)
    np.testing.assert_array_equal(first.scores, third.scores)


def test_a_score_directory_moved_to_another_machine_needs_no_statistics(data_dir: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Scores kept in --scores-dir (e.g. committed beside a results table) serve a fresh cache root:
    neither a baseline nor an expression computes anything for the networks they hold."""
    expr = "n_add(log_params, log_grad_norm)"
    first = _evaluate(["params", expr], data_dir, tmp_path / "here", scores_dir=tmp_path / "scores")
    assert sorted(p.name for p in (tmp_path / "scores").glob("*.json")) and not (tmp_path / "here" / SCORES_DIR).exists()
    moved = tmp_path / "elsewhere_scores"
    (tmp_path / "scores").rename(moved)

    def forbidden(*args):
        raise AssertionError("a cached network was computed again")

    monkeypatch.setattr(ev, "score_network", forbidden)
    monkeypatch.setattr(pool_module, "_fill_one", forbidden)
    again = _evaluate(["params", expr], data_dir, tmp_path / "fresh", scores_dir=moved)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.scores, b.scores)
    assert not list((tmp_path / "fresh").rglob("*.safetensors"))  # no statistics were computed there


# ----------------------------------------------------------------------------- failures, exclusion

def _write_run(run: Path, pools: dict[str, list[int]]) -> None:
    """A finished run directory whose only content that matters here is its pools."""
    doc = {"version": CHECKPOINT_VERSION, "config": config.Config().to_dict(), "next_generation": 1,
           "population": [], "fitness": [], "scored": {}, "hall_of_fame": [], "pareto_front": [], "history": [],
           "pools": pools, "elapsed": 0.0}
    (run / CHECKPOINT).write_text(json.dumps(doc))


def test_failures_are_recorded_counted_and_left_out_of_the_correlations(data_dir: Path, tmp_path: Path) -> None:
    flaky = _write(tmp_path / "flaky.py", FLAKY_FILE)
    result, params = _evaluate([flaky, "params"], data_dir, tmp_path / "cache", n=30)
    mod3 = params.scores % 3
    assert result.failed == int((mod3 != 2).sum()) > 0
    assert np.all(np.isnan(result.scores[mod3 != 2]))
    assert any("RuntimeError: multiple of three" in e for e in result.errors)
    assert any("non-finite" in e for e in result.errors)
    keep = mod3 == 2
    assert result.kendall_tau == pytest.approx(sps.kendalltau(params.scores[keep], params.accuracy[keep]).statistic)


def test_networks_of_an_evolution_run_are_excluded(data_dir: Path, tmp_path: Path) -> None:
    used = [r["index"] for r in benchmarks.sample("nb201:cifar10", 4, 0, data_dir)]  # an NB201 pool of another dataset
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run, {"nb201:cifar10": used})
    (plain,) = _evaluate(["params"], data_dir, tmp_path / "cache", n=4, seed=0)
    assert set(plain.index) == set(used)  # same seed, same sample: exactly the run's networks
    (held_out,) = _evaluate(["params"], data_dir, tmp_path / "cache", n=4, seed=0, exclude_run=run)
    assert len(held_out.index) == 4 and not set(held_out.index) & set(used)


def test_table_scripts_leave_out_a_runs_networks_on_every_space_it_used(data_dir: Path, tmp_path: Path) -> None:
    if not (data_dir / "naslib" / "zc_nasbench101.json").exists():
        pytest.skip("no NB101 data")
    used = [r["index"] for r in benchmarks.sample("nb101:cifar10", 3, 0, data_dir)]
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run, {"nb101:cifar10": used})
    kwargs = dict(exclude_run=str(run), data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"))
    *_, (_, held_out) = ev.evaluate_tasks(["params"], ["nb101:cifar10"], None, 3, **kwargs)
    assert len(held_out["nb101:cifar10"][0].index) == 3 and not set(held_out["nb101:cifar10"][0].index) & set(used)
    *_, (_, whole) = ev.evaluate_tasks(["params"], ["nb101:cifar10"], None, 3, exclude_spaces=("nb201",), **kwargs)
    assert set(whole["nb101:cifar10"][0].index) == set(used)


def test_exported_record_scores_as_its_expression(data_dir: Path, tmp_path: Path) -> None:
    record = _write(tmp_path / "rcor.json", json.dumps({"expression": RCOR, "pool_fitness": 0.5}))
    (by_record,) = _evaluate([record], data_dir, tmp_path / "cache")
    (by_text,) = _evaluate([RCOR], data_dir, tmp_path / "cache")
    assert by_record.proxy == "rcor.json" and by_text.proxy != by_record.proxy
    np.testing.assert_array_equal(by_record.scores, by_text.scores)
    assert np.all(np.isfinite(by_record.scores))


@pytest.mark.slow
def test_stats_exclude_run_fills_exactly_what_the_held_out_evaluation_needs(data_dir: Path, tmp_path: Path) -> None:
    """``eznas stats --exclude-run RUN`` probes the networks that ``eznas evaluate EXPR
    --exclude-run RUN`` then scores: the evaluation finds every statistic in the cache."""
    from conftest import run_cli

    used = [r["index"] for r in benchmarks.sample(SMALL_TASK, 4, 0, data_dir)]
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run, {"nb201:cifar10": used})
    cache = tmp_path / "cache"
    r = run_cli("stats", "--task", SMALL_TASK, "--n", "3", "--exclude-run", str(run), "--cache-dir", str(cache),
                "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    assert "3 networks, 3 computed" in r.stdout
    probed = sorted(p.name for p in cache.rglob("*.safetensors"))
    (e,) = ev.evaluate([RCOR], task=SMALL_TASK, n=3, seed=0, exclude_run=run, data_dir=data_dir, cache_dir=cache,
                       progress=False)
    assert sorted(p.name for p in cache.rglob("*.safetensors")) == probed  # nothing new to probe
    assert len(e.index) == 3 and not set(e.index) & set(used) and np.all(np.isfinite(e.scores))
    r = run_cli("stats", "--task", SMALL_TASK, "--n", "3", "--exclude-run", str(tmp_path / "nope"), "--cache-dir",
                str(cache), "--data-dir", str(data_dir))
    assert r.returncode == 2 and "holds no eznas run" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("make, message", [
    (lambda d: "snipp", "unknown proxy 'snipp': not a baseline"),
    (lambda d: str(d / "missing.py"), "missing.py not found"),
    (lambda d: _write(d / "empty.py", "x = 1\n"), "defines no function score"),
    (lambda d: _write(d / "broken.py", "def score(net, inputs, targets)\n    return 1\n"),
     "importing the proxy file failed (SyntaxError"),
    (lambda d: "n_add(log_params", "not a valid expression"),
    (lambda d: str(d / "missing.json"), "missing.json not found"),
    (lambda d: _write(d / "foreign.json", '{"expr": "log_params"}'), "has no 'expression'"),
    (lambda d: "agg_mean(A)", "not a valid expression"),
])
def test_bad_proxy_is_a_one_line_error(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(EznasError) as info:
        resolve(make(tmp_path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- command

def test_command_compares_proxies_and_writes_tables(data_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    proxy = _write(tmp_path / "params_proxy.py", PARAMS_FILE)
    assert main(["evaluate", "params", "--task", SMALL_TASK, "--n", "5", "--seed", "3",
                 "--compare", f"flops,{proxy},params", "--out", str(tmp_path / "cmp"),
                 "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "Kendall tau-b" in out and "wrote" in out
    rows = list(csv.DictReader((tmp_path / "cmp.csv").open()))
    assert [r["proxy"] for r in rows] == ["params", "flops", "params_proxy.py"]  # the repeated 'params' is dropped
    assert rows[0]["kendall_tau"] == rows[2]["kendall_tau"]  # the same networks and batch for every proxy
    assert all(r["networks"] == "5" and r["failed"] == "0" for r in rows)
    md = (tmp_path / "cmp.md").read_text()
    assert md.startswith("| task | proxy |") and "`params_proxy.py`" in md
    assert "Paired differences" not in md  # PROXY is a baseline: nothing to set against the baselines
    assert math.isfinite(float(rows[1]["seconds_per_net"]))
    assert main(["evaluate", str(proxy), "--task", SMALL_TASK, "--n", "5", "--seed", "3", "--compare", "flops,params",
                 "--out", str(tmp_path / "mine"), "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "against the best baseline" in capsys.readouterr().out
    paired = (tmp_path / "mine.md").read_text().split("## Paired differences")[1]
    # the file computes params: against params it differs by nothing, in every resample
    assert "+0.000 [+0.000, +0.000] |" in paired
