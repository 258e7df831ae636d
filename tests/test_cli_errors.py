"""Bad input through the CLI: one line on stderr, exit status 2, no traceback, nothing overwritten."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import needs_data, run_cli
from eznas.cli import main
from eznas.errors import EznasError, guarded

pytestmark = pytest.mark.slow  # each case runs eznas in a real process (the in-process matrix: test_bad_input.py)


def _assert_clean_error(result, *needles: str, prog: str = "eznas") -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error:"), result.stderr
    for n in needles:
        assert n in lines[0]


@needs_data
def test_info_works():
    r = run_cli("info", "nb201:cifar10", "--index", "6111")
    assert r.returncode == 0, r.stderr
    assert "94.37" in r.stdout


@needs_data
def test_malformed_arch_string():
    _assert_clean_error(run_cli("info", "nb201:cifar10", "--arch", "|nor_conv_3x3~0|+|bogus~0|"), "bogus")


def test_unknown_task():
    _assert_clean_error(run_cli("info", "nb201:cifar1000"), "unknown task")


def test_missing_data_directory(tmp_path):
    _assert_clean_error(run_cli("info", "nb201:cifar10", "--data-dir", str(tmp_path / "nowhere")), "not found", "nowhere")


@pytest.mark.slow
@needs_data
def test_truncated_json_and_csv(data_dir, tmp_path):
    (tmp_path / "nds").mkdir()
    (tmp_path / "nds" / "DARTS_in.json").write_text((data_dir / "nds" / "DARTS_in.json").read_text()[:1000])
    _assert_clean_error(run_cli("info", "nds:DARTS_in", "--data-dir", str(tmp_path)), "DARTS_in.json")
    (tmp_path / "nb201").mkdir()
    (tmp_path / "nb201" / "nats_bench.csv").write_text((data_dir / "nb201" / "nats_bench.csv").read_text()[:20000])
    _assert_clean_error(run_cli("info", "nb201:cifar10", "--data-dir", str(tmp_path)), "nats_bench.csv")


def test_bad_configs(tmp_path, capsys):
    """In-process (`eznas.cli.main`) for each config; the last, a missing one, through a real process."""
    cases = {
        "unknown_key.toml": ("[evolution]\npopulaton = 10\n", "populaton"),
        "wrong_type.toml": ("[evolution]\npopulation = \"many\"\n", "population"),
        "out_of_range.toml": ("[evolution]\ncrossover_prob = 1.5\n", "crossover_prob"),
        "bad_section.toml": ("[evolve]\nx = 1\n", "evolve"),
        "syntax.toml": ("[evolution\n", "malformed TOML"),
        "unknown_task.toml": ("[tasks]\nevolve = [\"nb201:cifar1000\"]\n", "unknown task"),
        "retries_range.toml": ("[run]\nretries = -1\n", "run.retries"),
        "timeout_type.toml": ("[run]\ntimeout = \"soon\"\n", "timeout"),
        "timeout_range.toml": ("[run]\ntimeout = -5\n", "run.timeout"),
        "parsimony_range.toml": ("[evolution]\nparsimony = 0.5\n", "evolution.parsimony"),
    }
    for name, (text, needle) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        status = main(["evolve", str(path), "--out", str(tmp_path / "run")])
        _assert_clean_error(subprocess.CompletedProcess([], status, "", capsys.readouterr().err), needle)
    assert not (tmp_path / "run" / "checkpoint.json").exists()
    _assert_clean_error(run_cli("evolve", str(tmp_path / "absent.toml"), "--out", str(tmp_path / "run")), "not found")


@pytest.mark.slow
def test_malformed_csv_row_and_json_structure(tmp_path):
    (tmp_path / "nb201").mkdir()
    (tmp_path / "nb201" / "nats_bench.csv").write_text(
        "CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
        "ArchitectureString,UniqueString\ngarbage,row\n")
    _assert_clean_error(run_cli("info", "nb201:cifar10", "--data-dir", str(tmp_path)), "nats_bench.csv:2", "malformed")
    (tmp_path / "nds").mkdir()
    for text in ('{"a": 1}', '[{"net": 1}]'):
        (tmp_path / "nds" / "DARTS_in.json").write_text(text)
        _assert_clean_error(run_cli("info", "nds:DARTS_in", "--data-dir", str(tmp_path)), "DARTS_in.json")


def test_unknown_task_for_stats(tmp_path):
    _assert_clean_error(run_cli("stats", "--task", "nb201:cifar1000", "--cache-dir", str(tmp_path)), "unknown task")
    assert not any(tmp_path.iterdir())


def _fake_run(out, config: dict) -> bytes:
    """A run directory holding a checkpoint of ``config`` (nothing else is read before the refusal)."""
    out.mkdir()
    doc = {"version": 1, "config": config, "next_generation": 1, "population": [], "fitness": [], "scored": {},
           "hall_of_fame": [], "pareto_front": [], "history": [], "pools": {}, "elapsed": 0.0}
    (out / "checkpoint.json").write_text(json.dumps(doc))
    return (out / "checkpoint.json").read_bytes()


@pytest.mark.slow
def test_run_directory_holding_a_different_run(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[evolution]\ngenerations = 1\n")
    out = tmp_path / "run"
    before = _fake_run(out, {"run": {"seed": 99}})
    _assert_clean_error(run_cli("evolve", str(config), "--out", str(out)), "already holds a run", "--resume", "--force")
    _assert_clean_error(run_cli("evolve", str(config), "--out", str(out), "--resume"), "different config")
    assert (out / "checkpoint.json").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_output_directory_not_writable(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[evolution]\ngenerations = 1\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _assert_clean_error(run_cli("evolve", str(config), "--out", str(locked)), "not writable")
        _assert_clean_error(run_cli("evolve", str(config), "--out", str(locked / "run")), "cannot create")
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("command", ["stats", "evolve"])
def test_unreachable_dask_scheduler(tmp_path, command):
    pytest.importorskip("dask.distributed")
    config = tmp_path / "c.toml"
    config.write_text("[evolution]\ngenerations = 1\n")
    args = ("stats", "--task", "nb201:cifar10", "--cache-dir", str(tmp_path / "cache")) if command == "stats" else \
        ("evolve", str(config), "--out", str(tmp_path / "run"))
    _assert_clean_error(run_cli(*args, "--backend", "dask", "--address", "nonsense://x"),
                        "cannot reach the dask scheduler at 'nonsense://x'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


@pytest.mark.parametrize("command", ["stats", "evolve"])
def test_missing_ray_package(tmp_path, command):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    config = tmp_path / "c.toml"
    config.write_text("[evolution]\ngenerations = 1\n")
    args = ("stats", "--task", "nb201:cifar10", "--cache-dir", str(tmp_path / "cache")) if command == "stats" else \
        ("evolve", str(config), "--out", str(tmp_path / "run"))
    _assert_clean_error(run_cli(*args, "--backend", "ray"), "pip install 'eznas[ray]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


@pytest.mark.parametrize("script, args, needle", [
    ("heldout.py", ["--run", "/nonexistent/run", "--tasks", "nb201:cifar10", "--n", "5"], "/nonexistent/run"),
    ("baselines.py", ["--tasks", "nb201:cifar11", "--n", "5"], "unknown task"),
    ("baselines.py", ["--tasks", "nb201:cifar10", "--n", "5", "--exclude-run", "/nope.json"], "/nope.json"),
    ("search.py", ["--proxies", "no_such_proxy", "--budget", "5", "--seeds", "1", "--tasks", "nb201:cifar10"],
     "no_such_proxy"),
])
def test_experiment_scripts_bad_input(tmp_path, script, args, needle):
    result = run_cli(*args, "--out", str(tmp_path / "table"), entry=(f"experiments/{script}",))
    _assert_clean_error(result, needle, prog=script)
    assert not list(tmp_path.iterdir())  # nothing written


def test_guarded_statuses(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    def bad() -> int:
        raise EznasError("what is wrong, and how to fix it")

    assert guarded("prog", lambda: 0) == 0
    assert guarded("prog", bad) == 2
    assert capsys.readouterr().err == "prog: error: what is wrong, and how to fix it\n"
    assert guarded("prog", interrupted) == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
