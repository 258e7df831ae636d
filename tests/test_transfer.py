"""Leave-one-family-out transfer: each fold evolves without its family, chooses on validation networks of
the others, and is scored on the left-out family beside every baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, needs_data, run_cli
from eznas import config
from eznas.errors import EznasError
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


@needs_data
@pytest.mark.slow
def test_one_fold_end_to_end(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('''[run]
seed = 1
n_jobs = 2
[tasks]
evolve = ["nb201:cifar10"]
pool_size = 4
sample_size = 4
validate_size = 3
aggregate = "space_softmin"
[probe]
batch_size = 16
features = 16
weight_rows = 8
weight_cols = 8
max_layers = 6
[evolution]
population = 12
generations = 1
tournament_size = 3
elites = 2
init_max_depth = 4
max_depth = 6
max_size = 20
hall_of_fame = 4
pool_fitness_top = 2
''')
    args = ("--config", str(tiny), "--folds", "nds-anynet", "--nds-n", "4", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "transfer"), "--cache-dir", str(tmp_path / "cache"), "--jobs", "2")
    r = run_cli(*args, entry=(str(REPO / "experiments" / "transfer.py"),), timeout=1800)
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "transfer.md").read_text()
    assert "| nds-anynet |" in md and "## Without nds-anynet: nds:ResNeXt-A_in, nds:ResNeXt-B_in" in md
    record = json.loads((tmp_path / "runs" / "without-nds-anynet.json").read_text())
    assert not {family(t) for t in record["config"]["tasks"]["evolve"]} & {"nds-anynet"}
    rows = (tmp_path / "transfer.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 14  # two tasks x (the evolved proxy + 13 baselines)
    r = run_cli(*args, entry=(str(REPO / "experiments" / "transfer.py"),), timeout=1800)  # a rerun resumes: no work
    assert r.returncode == 0 and "evolving" not in r.stdout, r.stderr
