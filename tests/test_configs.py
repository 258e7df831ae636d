"""The run configs shipped in ``experiments/`` load and pass validation, as users run them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from eznas import config
from eznas.errors import EznasError
from eznas.tasks import family

CONFIGS = sorted((REPO / "experiments").glob("*.toml"))


def test_the_shipped_configs_are_found() -> None:
    assert {"default.toml", "demo.toml", "general.toml", "smoke.toml", "transfer.toml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_shipped_config_loads(path: Path) -> None:
    cfg = config.load(path)
    assert cfg.tasks.evolve and cfg.evolution.generations > 0


def test_the_general_config_evolves_on_no_heldout_space() -> None:
    """The generality run keeps DESIGN.md's held-out spaces out of evolution and validation alike."""
    cfg = config.load(REPO / "experiments" / "general.toml")
    heldout_nds = {t for t in cfg.tasks.heldout if t.startswith("nds:")}
    assert not heldout_nds & {*cfg.tasks.evolve, *cfg.tasks.validate}
    assert {family(t) for t in cfg.tasks.evolve} == {"nb201", "nds-cell", "nb101", "nb301"}


@pytest.mark.parametrize("names, message", [
    (["W"], "per-network statistics"),
    (["log_h_trace"], "per-network statistics"),  # left out of transfer.toml's evolution.statistics
])
def test_relative_to_names_a_per_network_statistic_the_run_probes(names, message) -> None:
    with pytest.raises(EznasError, match=message):
        config.load(REPO / "experiments" / "transfer.toml", [f"tasks.relative_to={names!r}".replace("'", '"')])
    ok = config.load(REPO / "experiments" / "transfer.toml", ['tasks.relative_to=["log_params", "log_flops"]'])
    assert ok.tasks.relative_to == ("log_params", "log_flops")
