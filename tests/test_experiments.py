"""The table scripts of ``experiments/`` run from any directory and write their tables (tiny samples)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, needs_data, run_cli, tiny_config

pytestmark = [needs_data, pytest.mark.slow]


def _script(name: str, *args: str, cwd: Path):
    result = run_cli(*args, cwd=cwd, entry=(str(REPO / "experiments" / name),))
    assert result.returncode == 0, result.stderr
    return result


def test_heldout_script_scores_the_runs_unseen_networks(tmp_path: Path) -> None:
    record = REPO / "results" / "proxies" / "eznas_best.json"
    _script("heldout.py", "--run", str(record), "--proxy", "log_params", "--baselines", "flops",
            "--tasks", "nb201:cifar10,nds:ENAS_in,nb101:cifar10", "--n", "6", "--nds-n", "5", "--space-n", "nds=4",
            "--space-n", "nb101=3", "--out", str(tmp_path / "out" / "ho"), "--cache-dir", str(tmp_path / "cache"),
            cwd=tmp_path)
    rows = list(csv.DictReader((tmp_path / "out" / "ho.csv").open()))
    assert [(r["task"], r["networks"]) for r in rows] == [
        ("nb201:cifar10", "6"), ("nb201:cifar10", "6"), ("nds:ENAS_in", "4"), ("nds:ENAS_in", "4"),
        ("nb101:cifar10", "3"), ("nb101:cifar10", "3")]
    plots = {p.name for p in (tmp_path / "out").glob("ho_*.png")}
    assert plots == {"ho_cifar10.png", "ho_ENAS_in.png", "ho_nb101_cifar10.png", "ho_fitness.png"}
    md = (tmp_path / "out" / "ho.md").read_text()
    assert md.startswith("# Held-out evaluation") and "python experiments/heldout.py --run" in md
    assert (tmp_path / "out" / "ho_fitness.png").stat().st_size > 0


@pytest.mark.parametrize("bad", ["nds", "nds=1", "=5", "nds=x", "nb101=5"])
def test_a_bad_space_count_is_one_line(tmp_path: Path, bad: str) -> None:
    record = REPO / "results" / "proxies" / "eznas_best.json"
    result = run_cli("--run", str(record), "--baselines", "params", "--tasks", "nds:ENAS_in", "--space-n", bad,
                     "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path, entry=(str(REPO / "experiments" / "heldout.py"),))
    assert result.returncode == 2 and "--space-n" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_search_script_summarises_seeds(tmp_path: Path) -> None:
    _script("search.py", "--proxies", "params", "--budget", "5", "--seeds", "2", "--strategies", "random",
            "--tasks", "nb201:cifar10", "--out", str(tmp_path / "s"), "--cache-dir", str(tmp_path / "cache"),
            cwd=tmp_path)
    (summary,) = csv.DictReader((tmp_path / "s.csv").open())
    runs = list(csv.DictReader((tmp_path / "s_runs.csv").open()))
    assert summary["seeds"] == "2" and [r["seed"] for r in runs] == ["0", "1"]
    assert float(summary["mean_accuracy"]) == pytest.approx(sum(float(r["accuracy"]) for r in runs) / 2)


def test_gpu_benchmark_says_when_there_is_no_cuda_and_agrees_with_itself_on_the_cpu(tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        assert json.loads(_script("bench_gpu.py", cwd=tmp_path).stdout.splitlines()[-1]) == {
            "cuda": False, "note": "no CUDA device on this machine: nothing measured"}
    result = json.loads(_script("bench_gpu.py", "--quick", cwd=tmp_path).stdout.splitlines()[-1])
    assert result["devices"] == ["cpu", "cpu"] and result["networks"] == 2
    assert set(result["max_relative_difference"].values()) == {0.0} and result["tau_difference"] == 0.0
    assert result["stats_nets_per_s"][0] > 0 and result["fitness_programs_per_s"][1] > 0


def test_generation_profile_adds_up_to_the_generation_it_profiles(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(tiny_config(population=24, n_jobs=2))
    result = _script("profile_generation.py", "--config", "tiny.toml", "--generations", "2",
                     "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    profile = json.loads(result.stdout.splitlines()[-1])
    warm, gens = profile["warm"], profile["generations"]
    assert [g["gen"] for g in gens] == [0, 1, 2] and warm["gen"] == profile["profiled_generation"] in (1, 2)
    assert set(warm["parts"]) == {"variation", "chunk_parse", "chunk_primitives", "chunk_walk_and_memo",
                                  "parallel_overhead", "kendall_tau", "leaders_pool_fitness", "rest_of_loop"}
    for g in gens:
        assert min(g["parts"].values()) >= 0 and sum(g["parts"].values()) <= g["total"] * (1 + 1e-9)
        assert sum(g["parts"].values()) == pytest.approx(g["total"])
        assert [c["programs"] for c in g["chunks"]] == [12, 12]
    built = [sum(c["evaluator_built"] for c in g["chunks"]) for g in gens]
    assert built[0] >= 1 and sum(built) <= 2  # the pool reaches each worker once, in generation 0
    assert warm["primitives"] and all(r["calls"] > 0 and r["seconds"] >= 0 for r in warm["primitives"].values())
    assert set(warm["kinds"]) <= {"LAPACK reductions", "Gram builders", "elementwise", "other reductions", "aggregators"}
    assert sum(warm["kinds"].values()) == pytest.approx(sum(c["primitive_seconds"] for c in warm["chunks"]))
    moved = profile["transfer"]
    assert moved["handle_bytes_key_only"] < max(c["bytes_sent"] for c in warm["chunks"]) < moved["pool_bytes_pickled"]
    assert "warm generation" in result.stdout and "tree walk, memo" in result.stdout


def test_few_shot_script_reads_the_transfer_scores_and_agrees_with_the_transfer_table(tmp_path: Path) -> None:
    shutil.copytree(REPO / "results" / "scores", tmp_path / "scores")  # every score it needs is committed
    _script("few_shot.py", "--draws", "3", "--ks", "4,8", "--scores-dir", str(tmp_path / "scores"),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "fs"), cwd=REPO)
    families = [line.split(" | ") for line in (tmp_path / "fs.md").read_text().splitlines()
                if line.startswith("| nb") or line.startswith("| nds")]
    rows, picks = families[:5], families[5:]  # the summary table, then the most chosen candidates
    assert [r[0] for r in rows] == [r[0] for r in picks] == ["| nb201", "| nds-cell", "| nds-anynet", "| nb101", "| nb301"]
    assert all("%" in p[1] for p in picks)
    transfer = {(r["task"], r["proxy"]): float(r["kendall_tau"]) for r in csv.DictReader((REPO / "results" / "transfer.csv").open())}
    zero_shot = {r[0].removeprefix("| "): float(r[1]) for r in rows}
    assert zero_shot["nb101"] == pytest.approx(transfer[("nb101:cifar10", "without-nb101.json")], abs=5e-4)
    assert zero_shot["nb301"] == pytest.approx(transfer[("nb301:cifar10", "without-nb301.json")], abs=5e-4)
    assert all(len(r) == 8 for r in rows)  # the family, 4 zero-shot columns, chosen with k=4 and k=8, the bound


def test_few_shot_script_without_a_fold_program_is_one_line(tmp_path: Path) -> None:
    result = run_cli("--runs", str(tmp_path / "nothing"), cwd=tmp_path, entry=(str(REPO / "experiments" / "few_shot.py"),))
    assert result.returncode == 2 and "without-nb201.json does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
