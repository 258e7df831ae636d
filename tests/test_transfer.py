"""Leave-one-family-out transfer: each fold evolves without its family, chooses its program without looking
at it, and is scored on the left-out family beside every baseline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import DATA_DIR, REPO, needs_data
from eznas import config, transfer
from eznas.errors import EznasError
from eznas.report import POLICIES
from eznas.tables.transfer import CHOICES
from eznas.tasks import family
from eznas.transfer import FAMILIES, fold_config

BASE = config.load(REPO / "experiments" / "transfer.toml")


@pytest.mark.parametrize("left_out", [f.name for f in FAMILIES])
def test_a_fold_never_touches_its_family(left_out: str) -> None:
    cfg = fold_config(BASE, left_out)
    touched = {family(t) for t in (*cfg.tasks.evolve, *cfg.tasks.validate)}
    assert left_out not in touched and len(touched) == len(FAMILIES) - 1
    assert len(cfg.tasks.evolve) == len(FAMILIES) - 1 and cfg.tasks.heldout == ()
    assert cfg.evolution == BASE.evolution and cfg.probe == BASE.probe


def test_an_unknown_family_is_a_clear_error() -> None:
    with pytest.raises(EznasError, match="unknown family 'nb999'"):
        fold_config(BASE, "nb999")


def _script(name: str = "transfer.py"):
    """An experiments/ script as a module, so that a test can narrow the families it runs."""
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), REPO / "experiments" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@needs_data
def test_one_fold_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The script's whole path on two families (the others cost minutes of probing here): the fold without
    nds-anynet evolves on NB201 only, takes its fittest program, and is scored on both
    ResNeXt sweeps beside two baselines; a rerun resumes with no work."""
    monkeypatch.setattr(transfer, "FAMILIES", tuple(f for f in transfer.FAMILIES if f.name in ("nb201", "nds-anynet")))
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('''[run]
seed = 1
[tasks]
pool_size = 4
sample_size = 4
validate_size = 3
aggregate = "space_softmin"
[probe]
batch_size = 8
features = 16
weight_rows = 8
weight_cols = 8
max_layers = 6
[evolution]
population = 8
generations = 1
tournament_size = 3
elites = 2
init_max_depth = 3
max_depth = 5
max_size = 12
hall_of_fame = 3
pool_fitness_top = 2
''')
    args = ["--config", str(tiny), "--folds", "nds-anynet", "--nds-n", "3", "--runs", str(tmp_path / "runs"),
            "--proxies", str(tmp_path / "proxies"), "--out", str(tmp_path / "transfer"), "--cache-dir",
            str(tmp_path / "cache"), "--jobs", "1", "--baselines", "params,flops", "--data-dir", str(DATA_DIR)]
    script = _script()
    monkeypatch.chdir(tmp_path)
    assert script.main(args) == 0
    assert not (tmp_path / ".eznas_cache").exists()  # every statistic went to --cache-dir, the export's too
    assert "fold without nds-anynet: evolving on nb201:cifar10" in capsys.readouterr().out
    md = (tmp_path / "transfer.md").read_text()
    assert "| nds-anynet |" in md and "## Without nds-anynet: nds:ResNeXt-A_in, nds:ResNeXt-B_in" in md
    record = json.loads((tmp_path / "proxies" / "without-nds-anynet.json").read_text())
    assert record["config"]["tasks"]["evolve"] == ["nb201:cifar10"]
    assert record["config"]["tasks"]["validate"] == ["nb201:cifar100"]
    rows = (tmp_path / "transfer.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3  # two tasks x (the evolved proxy, params, flops)
    assert script.main(args) == 0  # a rerun resumes: no evolution
    assert "evolving" not in capsys.readouterr().out
    oracle = _script("transfer_oracle.py")  # the hall of fame of the fold on the same networks
    assert oracle.main([str(tmp_path / "runs"), "--nds-n", "3", "--cache-dir", str(tmp_path / "cache"),
                        "--data-dir", str(DATA_DIR), "--out", str(tmp_path / "oracle")]) == 0
    (row,) = json.loads(capsys.readouterr().out.splitlines()[-1])
    by = {(r.split(",")[0], r.split(",")[1]): float(r.split(",")[4]) for r in rows[1:]}
    mean = {p: (by["nds:ResNeXt-A_in", p] + by["nds:ResNeXt-B_in", p]) / 2 for p in ("without-nds-anynet.json", "params", "flops")}
    assert row["accuracy"] == pytest.approx(mean["without-nds-anynet.json"])  # the fold's own choice
    assert row["params_flops"] == pytest.approx(max(mean["params"], mean["flops"]))
    assert row["best"] >= max(row["accuracy"], row["parsimony"], row["validation"], row["median"])
    assert "| nds-anynet |" in (tmp_path / "oracle.md").read_text()


def test_the_report_describes_every_choice_policy() -> None:
    assert set(CHOICES) == set(POLICIES)


def test_an_unknown_policy_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        _script().main(["--policy", "oracle"])
    assert info.value.code == 2 and "--policy" in capsys.readouterr().err


def test_baselines_without_the_size_references_are_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        _script().main(["--baselines", "synflow,flops"])
    assert info.value.code == 2 and "--baselines must include params" in capsys.readouterr().err
