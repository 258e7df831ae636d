"""The run directory and its files (`eznas.run`), the one atomic writer (`eznas.files`), `eznas export`'s
guard against overwriting a run, PROXY resolution by text, and the import chain of `eznas.evaluate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from eznas import run as run_dir
from eznas.config import Config
from eznas.errors import EznasError
from eznas.export import export_run
from eznas import files as files_module
from eznas.files import write_atomic
from eznas.proxy_spec import resolve

EXPR = "n_add(log_params, log_flops)"


def _checkpoint(tmp_path: Path) -> Path:
    """A finished run directory holding one hall-of-fame program."""
    out = tmp_path / "run"
    out.mkdir()
    row = {"expr": EXPR, "infix": "(log_params + log_flops)", "size": 3, "depth": 1, "fitness": 0.5,
           "taus": {"nb201:cifar10": 0.5}, "generation": 0}
    doc = {"version": run_dir.CHECKPOINT_VERSION, "config": Config().to_dict(), "next_generation": 1,
           "population": [EXPR], "fitness": [0.5], "scored": {EXPR: row}, "hall_of_fame": [row],
           "pareto_front": [row], "history": [{"gen": 0, "best": 0.5, "median": 0.5, "hof_fitness": 0.5,
                                               "seconds": 1.0}], "pools": {"nb201:cifar10": [1, 2]}, "elapsed": 1.0}
    assert set(doc) == set(run_dir.CHECKPOINT_KEYS)
    run_dir.write_checkpoint(out, doc)
    return out


def test_checkpoint_round_trip_and_logbook(tmp_path: Path) -> None:
    out = _checkpoint(tmp_path)
    doc = run_dir.read_checkpoint(out)
    assert doc["hall_of_fame"][0]["expr"] == EXPR
    assert [json.loads(line)["gen"] for line in (out / run_dir.LOG).read_text().splitlines()] == [0]
    assert sorted(p.name for p in out.iterdir()) == [run_dir.CHECKPOINT, run_dir.LOG]  # no temporary file left
    assert run_dir.read_run(out).pools == {"nb201:cifar10": [1, 2]}


def test_starting_a_run_over_drops_the_old_runs_held_out_cache(tmp_path: Path) -> None:
    out = _checkpoint(tmp_path)
    run_dir.write_heldout(out, {EXPR: {"nb201:cifar100": 0.5}})
    run_dir.prepare(out, resume=True, force=False)
    assert run_dir.read_heldout(out)
    run_dir.prepare(out, resume=False, force=True)
    assert run_dir.read_heldout(out) == {} and (out / run_dir.CHECKPOINT).exists()


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_atomic(tmp_path / "deep" / "table.md", "old\n")
    assert path.read_text() == "old\n"

    def broken(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("eznas.files.os.replace", broken)
    with pytest.raises(EznasError, match=r"cannot write .*table.md: No space left on device; choose another"):
        write_atomic(path, "new\n", fix="choose another --out prefix")
    assert path.read_text() == "old\n" and [p.name for p in path.parent.iterdir()] == ["table.md"]


def test_write_atomic_into_a_file_path_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a directory")
    with pytest.raises(EznasError, match="cannot write") as info:
        write_atomic(tmp_path / "blocker" / "x.csv", "a,b\n")
    assert "\n" not in str(info.value)


def test_export_writes_the_proxy_and_its_record(tmp_path: Path) -> None:
    out = _checkpoint(tmp_path)
    target, record, infix = export_run(out, 0, tmp_path / "proxies" / "best.py", formulas=False)
    assert target.read_text().startswith('"""Zero-cost proxy evolved by eznas.')
    assert json.loads(record.read_text())["expression"] == EXPR and infix == "(log_params + log_flops)"


@pytest.mark.parametrize("name, needle", [
    ("checkpoint.py", "is a file of run"),  # its .json would be the run's checkpoint
    ("log.jsonl.py", "is a file of run"),
    ("best.json", "ending in .py"),  # the .py and the record would be one file
    ("best", "ending in .py"),
])
def test_export_refuses_to_overwrite_the_run_or_itself(tmp_path: Path, name: str, needle: str) -> None:
    out = _checkpoint(tmp_path)
    (out / "log.jsonl.json").write_text("{}")  # a file of the run that 'log.jsonl.py' would overwrite
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(EznasError, match=needle):
        export_run(out, 0, out / name)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_export_rank_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(EznasError, match=r"--rank 3 does not exist: .* ranks 0..0"):
        export_run(_checkpoint(tmp_path), 3, tmp_path / "p.py")


def test_proxy_text_is_resolved_without_guessing_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "log_params").write_text("not a proxy")  # a file named like a terminal
    assert resolve("log_params").kind == "expression"
    long = "n_add(" * 60 + "log_params" + ", log_flops)" * 60  # 1,330 characters: longer than a file name may be
    spec = resolve(long)
    assert spec.kind == "expression" and len(spec.ref) > 255
    with pytest.raises(EznasError, match="proxy file missing.py not found"):
        resolve("missing.py")


def test_evaluate_loads_neither_evolve_nor_deap() -> None:
    code = "import sys, eznas.evaluate; print(sorted(m for m in ('eznas.evolve', 'deap') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_export_writes_both_files_or_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _checkpoint(tmp_path)
    real = files_module._stage

    def fail_on_record(path: Path, *args):
        if path.suffix == ".json":
            raise OSError(28, "No space left on device")
        return real(path, *args)

    monkeypatch.setattr(files_module, "_stage", fail_on_record)
    with pytest.raises(EznasError, match=r"cannot write .*best.json: No space left"):
        export_run(out, 0, tmp_path / "best.py", formulas=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .py alone, no temporary file


def test_a_killed_exports_temporary_files_are_cleared_when_old(tmp_path: Path) -> None:
    out = _checkpoint(tmp_path)
    old, fresh = tmp_path / ".best.py.x1.tmp", tmp_path / ".best.py.x2.tmp"  # as a killed export leaves them
    for path in (old, fresh):
        path.write_text("partial")
    hours_ago = time.time() - files_module.STALE_SECONDS - 60
    os.utime(old, (hours_ago, hours_ago))
    export_run(out, 0, tmp_path / "best.py", formulas=False)
    assert not old.exists() and fresh.exists()  # a fresh one may belong to a writer still running


def test_a_crafted_infix_is_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = _checkpoint(tmp_path)
    doc = json.loads((out / run_dir.CHECKPOINT).read_text())
    for row in doc["hall_of_fame"] + doc["pareto_front"]:
        row["infix"] = "\x1b[2J\x1b[Hscore = synflow"  # clears the screen, shows another formula
    (out / run_dir.CHECKPOINT).write_text(json.dumps(doc))
    from eznas.cli import main

    assert main(["inspect", str(out), "--no-heldout", "--raw"]) == 0
    assert main(["export", str(out), "-o", str(tmp_path / "p.py"), "--raw"]) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "(log_params + log_flops)" in printed
    assert "\x1b" not in (tmp_path / "p.py").read_text() + (tmp_path / "p.json").read_text()


def test_damaged_heldout_cache_is_recomputed_with_a_warning(tmp_path: Path) -> None:
    out = _checkpoint(tmp_path)
    (out / run_dir.HELDOUT).write_text('{"log_params": {"nb201:cifar100": "high"}}')
    with pytest.warns(UserWarning, match="heldout.json is unreadable"):
        assert run_dir.read_heldout(out) == {}
    (out / run_dir.HELDOUT).write_text('{"log_params": {"nb201:cifar1')
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert run_dir.read_heldout(out) == {}


def test_unwritable_statistics_cache_fails_before_any_probe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from conftest import DATA_DIR
    from eznas.cli import main

    if DATA_DIR is None:
        pytest.skip("benchmark data not found")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    status = main(["stats", "--task", "nb201:cifar10", "--n", "2", "--cache-dir", str(blocker),
                   "--data-dir", str(DATA_DIR)])
    assert status == 2 and "cannot write to the statistics cache" in capsys.readouterr().err
