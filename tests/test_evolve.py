"""The evolution engine end to end through the CLI: a tiny run, resume after SIGKILL,
independence from the number of workers, inspect and export, and the refusal cases."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_DIR, REPO, needs_data, run_cli, tiny_config

from eznas import config, evolve, gp as programs
from eznas.cache import StatsCache
from eznas.fitness import Evaluator, evaluate
from eznas.pool import load_pool
from eznas.report import pool_batch
from eznas.resident import Resident
from eznas.run import heldout_records, is_record, pool_records, read_run
from eznas.statsbatch import concat

pytestmark = [needs_data, pytest.mark.slow]  # end-to-end evolutions through the CLI


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evolve")
    paths = {"root": root, "cache": root / "cache"}
    for g in (3, 6):
        p = root / f"tiny{g}.toml"
        p.write_text(tiny_config(("nb201:cifar10", "nds:DARTS_in"), pool_size=10, sample_size=8, generations=g, n_jobs=1))
        paths[f"tiny{g}"] = p
    return paths


def _evolve(ws, config: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("evolve", str(ws[config]), "--out", str(out), "--cache-dir", str(ws["cache"]), *extra)


def _checkpoint(out: Path) -> dict:
    return json.loads((out / "checkpoint.json").read_text())


@pytest.fixture(scope="module")
def finished_run(workspace) -> Path:
    out = workspace["root"] / "run3"
    r = _evolve(workspace, "tiny3", out)
    assert r.returncode == 0, r.stderr
    assert "gen    3" in r.stdout and "best:" in r.stdout
    return out


def test_run_directory_holds_checkpoint_log_and_config(finished_run):
    ckpt = _checkpoint(finished_run)
    assert ckpt["next_generation"] == 4
    assert len(ckpt["history"]) == 4 and len(ckpt["population"]) == 24
    assert len((finished_run / "log.jsonl").read_text().splitlines()) == 4
    hof = ckpt["hall_of_fame"]
    assert 1 <= len(hof) <= 5
    assert [h["fitness"] for h in hof] == sorted((h["fitness"] for h in hof), reverse=True)
    sizes = [r["size"] for r in ckpt["pareto_front"]]
    fits = [r["fitness"] for r in ckpt["pareto_front"]]
    assert sizes == sorted(sizes) and fits == sorted(fits)
    assert json.loads((finished_run / "config.json").read_text())["run"]["seed"] == 7


def test_golden_best_expression_of_the_seeded_tiny_run(finished_run):
    """Pins the engine's output (as gplearn pins its formula): any change to generation,
    variation, sampling or fitness that alters the seeded run shows up here."""
    best = _checkpoint(finished_run)["hall_of_fame"][0]
    assert best["expr"] == "n_abs(log_params)"
    assert best["fitness"] == pytest.approx(0.7222222222222221, abs=1e-9)


def test_resume_after_sigkill_matches_uninterrupted_run(workspace):
    full = workspace["root"] / "full6"
    assert _evolve(workspace, "tiny6", full).returncode == 0
    killed = workspace["root"] / "killed6"
    env = {**os.environ, "EZNAS_DATA_DIR": os.environ.get("EZNAS_DATA_DIR", str(REPO.parent / "shared" / "data"))}
    proc = subprocess.Popen([sys.executable, "-m", "eznas.cli", "evolve", str(workspace["tiny6"]), "--out", str(killed),
                             "--cache-dir", str(workspace["cache"])], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        path = killed / "checkpoint.json"
        if path.exists() and json.loads(path.read_text())["next_generation"] >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = _checkpoint(killed)["next_generation"]
    assert stopped_at >= 3
    r = _evolve(workspace, "tiny6", killed, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _checkpoint(full), _checkpoint(killed)
    assert a["hall_of_fame"] == b["hall_of_fame"]
    strip = lambda h: [{k: v for k, v in rec.items() if k != "seconds"} for rec in h]
    assert strip(a["history"]) == strip(b["history"])
    assert a["population"] == b["population"]


def test_results_do_not_depend_on_worker_count(workspace, finished_run):
    out = workspace["root"] / "run3_jobs2"
    r = _evolve(workspace, "tiny3", out, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert _checkpoint(out)["hall_of_fame"] == _checkpoint(finished_run)["hall_of_fame"]


def test_pool_scores_do_not_depend_on_backend_workers_or_what_workers_kept(workspace, finished_run):
    """The run's scores of a population: on every local backend and worker count, with workers
    meeting the pool for the first time or keeping it (and their memo) from the call before,
    those of a fresh evaluator per program, bit for bit."""
    cfg = config.load(workspace["tiny3"])
    pool = concat([load_pool(t, pool_records(cfg, t), cfg.probe, StatsCache(workspace["cache"]), progress=False)
                   for t in cfg.tasks.evolve])
    texts = _checkpoint(finished_run)["population"]
    fresh = np.stack([Evaluator(pool).safe_scores(programs.parse(t)) for t in texts])
    handle = Resident(pool.digest(), pool)
    for backend, n_jobs in (("sequential", 1), ("threading", 2), ("loky", 2), ("loky", 3)):
        run_cfg = config.load(workspace["tiny3"], [f'run.backend="{backend}"', f"run.n_jobs={n_jobs}"])
        for _ in range(2):
            assert np.array_equal(evolve.pool_scores(texts, handle, run_cfg), fresh, equal_nan=True), (backend, n_jobs)


def test_existing_run_is_refused_without_resume_or_force(workspace, finished_run):
    before = (finished_run / "checkpoint.json").read_bytes()
    r = _evolve(workspace, "tiny3", finished_run)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert (finished_run / "checkpoint.json").read_bytes() == before


def test_unwritable_output_directory_is_refused(workspace, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = _evolve(workspace, "tiny3", blocker / "run")
    assert r.returncode == 2 and "cannot create run directory" in r.stderr and "Traceback" not in r.stderr
    assert blocker.read_text() == "not a directory"


def test_inspect_prints_tables_and_writes_plot(workspace, finished_run):
    r = run_cli("inspect", str(finished_run), "--top", "3", "--cache-dir", str(workspace["cache"]))
    assert r.returncode == 0, r.stderr
    assert ">>>>" in r.stdout and "Pareto front" in r.stdout and "heldout" in r.stdout
    assert (finished_run / "fitness.png").stat().st_size > 1000
    assert (finished_run / "front.csv").read_text().startswith("size,depth,fitness")
    held = json.loads((finished_run / "heldout.json").read_text())
    assert all("nb201:cifar100" in v for v in held.values())
    rows = [line for line in r.stdout.splitlines() if line[5:9].strip().isdigit()][:3]
    assert len(rows) == 3 and all(re.search(r"  [=~.] \S", line) for line in rows)  # each shown as a formula
    r = run_cli("inspect", str(finished_run), "--top", "3", "--raw", "--latex", "--cache-dir", str(workspace["cache"]))
    assert r.returncode == 0 and "simplifying" not in r.stdout and "LaTeX" not in r.stdout
    r = run_cli("inspect", str(finished_run), "--top", "2", "--latex", "--no-heldout", "--cache-dir",
                str(workspace["cache"]))
    assert r.returncode == 0 and "LaTeX of the hall of fame" in r.stdout


def test_summary_sets_the_chosen_program_beside_the_baselines_on_held_out_networks(workspace, finished_run):
    from eznas.cli import main
    from eznas.report import summary

    text = summary(finished_run, "accuracy", cache_dir=str(workspace["cache"]))
    held = json.loads((finished_run / "heldout.json").read_text())
    best = _checkpoint(finished_run)["hall_of_fame"][0]["expr"]
    line = next(line for line in text.splitlines() if line.startswith("nb201:cifar100"))
    want = [held[e]["nb201:cifar100"] for e in (best, "log_params", "log_flops", "log_snip_total", "naswot")]
    assert [float(x) for x in line.split()[2:]] == pytest.approx(want, abs=5e-5)
    assert "policy 'accuracy'" in text and "score = " in text and "fitness.png" in text
    assert main(["inspect", str(finished_run), "--summary", "--raw"]) == 2  # before any work


def test_export_writes_module_and_rejects_missing_rank(workspace, finished_run):
    target = workspace["root"] / "proxy.py"
    r = run_cli("export", str(finished_run), "-o", str(target), "--cache-dir", str(workspace["cache"]))
    assert r.returncode == 0, r.stderr
    text = target.read_text()
    assert "def score(net, inputs, targets)" in text
    record = json.loads(target.with_suffix(".json").read_text())
    formula = record["formula"]  # the formula inspect shows, first in the docstring, the program after it
    assert formula["check"] in ("exact", "pool-verified", "as evolved") and formula["text"] in r.stdout
    best = programs.infix(programs.parse(_checkpoint(finished_run)["hall_of_fame"][0]["expr"]))
    assert text.index(f"    score = {formula['text']}\n") < text.index(best)
    ckpt = _checkpoint(finished_run)
    assert record["expression"] == ckpt["hall_of_fame"][0]["expr"] and record["seed"] == 7
    assert [h["gen"] for h in record["fitness_history"]] == [0, 1, 2, 3]
    assert record["evolution_seconds"] == ckpt["elapsed"] and record["machine"]["cpus"] >= 1
    r = run_cli("export", str(finished_run), "--rank", "99", "-o", str(workspace["root"] / "nope.py"))
    assert r.returncode == 2 and "rank" in r.stderr
    assert not (workspace["root"] / "nope.py").exists() and not (workspace["root"] / "nope.json").exists()


def test_an_exported_record_stands_for_its_run(workspace, finished_run, tmp_path):
    """Held-out evaluations can name the exported ``.json`` instead of the run directory: the
    pools drawn again from its config are the run's, and so are the probe settings and history."""
    assert run_cli("export", str(finished_run), "-o", str(tmp_path / "best.py"), "--raw").returncode == 0
    by_record, by_dir = read_run(tmp_path / "best.json", DATA_DIR), read_run(finished_run)
    assert by_record.pools == by_dir.pools and sum(map(len, by_dir.pools.values())) > 0
    assert by_record.config.probe == by_dir.config.probe
    assert [h["best"] for h in by_record.history] == [h["best"] for h in by_dir.history]


def test_a_run_directory_named_like_a_record_is_read_as_a_run(finished_run, tmp_path):
    odd = tmp_path / "run.json"
    shutil.copytree(finished_run, odd)
    assert is_record(tmp_path / "best.json") and not is_record(odd) and not is_record(finished_run)
    assert read_run(odd).pools == read_run(finished_run).pools


def test_corrupt_checkpoint_is_a_clear_error(workspace, finished_run, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.json").write_text('{"version": 1, "popul')
    for args in (("inspect", str(bad)), ("export", str(bad), "-o", str(tmp_path / "x.py"))):
        r = run_cli(*args)
        assert r.returncode == 2 and "corrupt" in r.stderr and "Traceback" not in r.stderr
    r = _evolve(workspace, "tiny3", bad, "--resume")
    assert r.returncode == 2 and "corrupt" in r.stderr


def test_seed_from_opens_the_initial_population(workspace, finished_run, tmp_path):
    """evolution.seed_from: an exported proxy's expression, then the seed run's hall of fame (its
    repeat dropped), in order, start generation 0, and the random initialisation fills the rest;
    on the same pools the seeds score as in the seed run."""
    r = run_cli("export", str(finished_run), "--rank", "1", "-o", str(tmp_path / "second.py"), "--raw")
    assert r.returncode == 0
    out = workspace["root"] / "seeded"
    r = _evolve(workspace, "tiny3", out, "--set", f'evolution.seed_from=["{tmp_path / "second.json"}", "{finished_run}"]',
                "--set", "evolution.generations=0")
    assert r.returncode == 0, r.stderr
    hof = [h["expr"] for h in _checkpoint(finished_run)["hall_of_fame"]]
    seeded = _checkpoint(out)
    assert seeded["population"][:len(hof)] == [hof[1], hof[0], *hof[2:]]
    assert len(seeded["population"]) == len(set(seeded["population"])) == 24
    assert seeded["hall_of_fame"][0] == {**_checkpoint(finished_run)["hall_of_fame"][0], "generation": 0}
    assert json.loads((out / "config.json").read_text())["evolution"]["seed_from"] == [str(tmp_path / "second.json"), str(finished_run)]


@pytest.mark.parametrize("make_seed, message", [
    (lambda d: d / "missing.json", "not found"),
    (lambda d: (d / "bad.json").write_text("{not json") and d / "bad.json", "not valid JSON"),
    (lambda d: (d / "other.json").write_text('{"expr": "log_params"}') and d / "other.json", "has no 'expression'"),
    (lambda d: (d / "run").mkdir() or d / "run", "holds no eznas run"),
])
def test_bad_seed_from_fails_before_any_work(workspace, tmp_path, make_seed, message):
    cache = tmp_path / "cache"
    r = run_cli("evolve", str(workspace["tiny3"]), "--out", str(tmp_path / "out"), "--cache-dir", str(cache),
                "--set", f'evolution.seed_from=["{make_seed(tmp_path)}"]')
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not cache.exists() and not (tmp_path / "out" / "checkpoint.json").exists()


def test_seed_over_the_size_limit_names_the_limit(workspace, finished_run, tmp_path):
    largest = max(h["size"] for h in _checkpoint(finished_run)["hall_of_fame"])
    assert largest > 3
    r = run_cli("evolve", str(workspace["tiny3"]), "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "cache"),
                "--set", f'evolution.seed_from=["{finished_run}"]', "--set", f"evolution.max_size={largest - 1}")
    assert r.returncode == 2 and f"max_size = {largest - 1}" in r.stderr and "raise them" in r.stderr
    assert not (tmp_path / "cache").exists()


def test_hall_of_fame_keeps_one_program_per_phenotype():
    """Programs with the same per-task taus order every pool alike: only the smallest stays,
    and the freed places go to the next distinct rankings."""
    def entry(expr, size, fitness, taus):
        return {"expr": expr, "size": size, "fitness": fitness, "taus": taus}
    scored = {r["expr"]: r for r in [
        entry("big_twin", 9, 0.8, {"a": 0.7, "b": 0.9}),
        entry("small_twin", 3, 0.8, {"a": 0.7, "b": 0.9}),
        entry("same_fitness_other_taus", 5, 0.8, {"a": 0.9, "b": 0.7}),
        entry("third", 2, 0.5, {"a": 0.5, "b": 0.5}),
        entry("fourth", 2, 0.4, {"a": 0.4, "b": 0.4}),
    ]}
    assert [r["expr"] for r in evolve.hall_of_fame(scored, 3)] == ["small_twin", "same_fitness_other_taus", "third"]
    assert [r["expr"] for r in evolve.hall_of_fame(scored, 10)] == ["small_twin", "same_fitness_other_taus", "third", "fourth"]


def test_validation_policy_picks_on_networks_kept_from_fitness_and_from_the_held_out_ones(workspace, finished_run,
                                                                                          tmp_path):
    """tasks.validate: programs are compared on validation networks (disjoint from the pools); held-out
    networks then leave out the validation ones too; inspect and export pick with policy 'validation'."""
    run = tmp_path / "validated"
    shutil.copytree(finished_run, run)
    ckpt = _checkpoint(run)
    ckpt["config"]["tasks"].update(validate=["nb201:ImageNet16-120"], validate_size=6)
    (run / "checkpoint.json").write_text(json.dumps(ckpt))
    (run / "heldout.json").unlink(missing_ok=True)
    info = read_run(run, DATA_DIR)
    nb201_pool = set(info.pools["nb201:cifar10"])
    validation = set(info.validation["nb201:ImageNet16-120"])
    assert len(validation) == 6 and not validation & nb201_pool
    held_out = {r["index"] for r in heldout_records("nb201:cifar100", info.config, info.used, DATA_DIR)}
    assert not held_out & (validation | nb201_pool)
    r = run_cli("export", str(run), "--policy", "validation", "-o", str(tmp_path / "picked.py"),
                "--cache-dir", str(workspace["cache"]))
    assert r.returncode == 0, r.stderr
    # the choice scores the validation networks only: the held-out ones are inspect's business
    assert {t for taus in json.loads((run / "heldout.json").read_text()).values() for t in taus} == {"nb201:ImageNet16-120"}
    r = run_cli("inspect", str(run), "--policy", "validation", "--cache-dir", str(workspace["cache"]))
    assert r.returncode == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if "rank" in line and "expression" in line)
    assert "valid" in header and "scoring" in r.stdout and "nb201:cifar100" in r.stdout
    taus = json.loads((run / "heldout.json").read_text())
    means = {e: t["nb201:ImageNet16-120"] for e, t in taus.items()}
    hof = ckpt["hall_of_fame"]
    best = max(means[row["expr"]] for row in hof)
    expected = min((row for row in hof if means[row["expr"]] >= best - 0.01), key=lambda row: row["size"])
    assert json.loads((tmp_path / "picked.json").read_text())["expression"] == expected["expr"]


def test_the_time_left_follows_the_recent_generations_not_the_fast_early_ones() -> None:
    history = [{"gen": 0, "seconds": 40.0}] + [{"gen": g, "seconds": s} for g, s in enumerate([2, 2, 2, 50, 60, 70], 1)]
    assert evolve.time_per_generation(history) == 60.0
    assert evolve.time_per_generation(history[:1]) == 40.0 and evolve.time_per_generation([]) == 0.0


def test_relative_to_makes_fitness_the_margin_over_the_reference(workspace):
    """tasks.relative_to = ["log_params"]: every hall-of-fame program's fitness is the mean over tasks of its
    tau minus params' plain tau-b on the pool networks; its taus are its own."""
    out = workspace["root"] / "relative"
    r = _evolve(workspace, "tiny3", out, "--set", 'tasks.relative_to=["log_params"]', "--set", "evolution.generations=1")
    assert r.returncode == 0, r.stderr
    batch = pool_batch(out, str(DATA_DIR), str(workspace["cache"]))
    params = evaluate(Evaluator(batch), programs.parse("log_params"), "mean", penalise_ties=False).taus
    own = {h["expr"]: evaluate(Evaluator(batch), programs.parse(h["expr"]), "mean").taus
           for h in _checkpoint(out)["hall_of_fame"]}
    for entry in _checkpoint(out)["hall_of_fame"]:
        assert entry["taus"] == pytest.approx(own[entry["expr"]])
        assert entry["fitness"] == pytest.approx(np.mean([entry["taus"][t] - params[t] for t in params]))
    r = run_cli("inspect", str(out), "--no-heldout", "--raw", "--cache-dir", str(workspace["cache"]))
    assert r.returncode == 0, r.stderr
    assert "'fitness': mean of each task's margin over the best of log_params (tasks.relative_to)" in r.stdout
    r = run_cli("export", str(out), "-o", str(workspace["root"] / "relative.py"), "--raw")
    assert r.returncode == 0, r.stderr
    assert ' pool_fitness_relative_to: ["log_params"]' in (workspace["root"] / "relative.py").read_text()
