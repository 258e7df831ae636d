"""Bad input through the CLI: one line on stderr, exit status 2, no traceback, nothing overwritten."""

from __future__ import annotations

import shutil

import pytest

from conftest import needs_data, run_cli


def _assert_clean_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("eznas: error:"), result.stderr
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


@needs_data
def test_truncated_json_and_csv(data_dir, tmp_path):
    (tmp_path / "nds").mkdir()
    (tmp_path / "nds" / "DARTS_in.json").write_text((data_dir / "nds" / "DARTS_in.json").read_text()[:1000])
    _assert_clean_error(run_cli("info", "nds:DARTS_in", "--data-dir", str(tmp_path)), "DARTS_in.json")
    (tmp_path / "nb201").mkdir()
    (tmp_path / "nb201" / "nats_bench.csv").write_text((data_dir / "nb201" / "nats_bench.csv").read_text()[:20000])
    _assert_clean_error(run_cli("info", "nb201:cifar10", "--data-dir", str(tmp_path)), "nats_bench.csv")


def test_bad_configs(tmp_path):
    cases = {
        "unknown_key.toml": ("[evolution]\npopulaton = 10\n", "populaton"),
        "wrong_type.toml": ("[evolution]\npopulation = \"many\"\n", "population"),
        "out_of_range.toml": ("[evolution]\ncrossover_prob = 1.5\n", "crossover_prob"),
        "bad_section.toml": ("[evolve]\nx = 1\n", "evolve"),
        "syntax.toml": ("[evolution\n", "malformed TOML"),
    }
    for name, (text, needle) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        _assert_clean_error(run_cli("evolve", str(path), "--out", str(tmp_path / "run")), needle)
    assert not (tmp_path / "run" / "checkpoint.json").exists()
    _assert_clean_error(run_cli("evolve", str(tmp_path / "absent.toml"), "--out", str(tmp_path / "run")), "not found")
