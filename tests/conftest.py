"""Shared test fixtures: the data directory and a helper to run the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def published_expression(name: str = "eznas_best") -> str:
    """The program of the published proxy ``results/proxies/NAME.json``."""
    return json.loads((REPO / "results" / "proxies" / f"{name}.json").read_text())["expression"]


def _data_dir() -> Path | None:
    for d in (os.environ.get("EZNAS_DATA_DIR"), REPO / "data", REPO.parent / "shared" / "data"):
        if d and (Path(d) / "nb201" / "nats_bench.csv").is_file():
            return Path(d)
    return None


DATA_DIR = _data_dir()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="benchmark data not found (set EZNAS_DATA_DIR)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data directory (tests needing it are skipped without it)."""
    if DATA_DIR is None:
        pytest.skip("benchmark data not found (set EZNAS_DATA_DIR)")
    return DATA_DIR


def run_cli(*args: str, cwd: Path | str = REPO, env: dict | None = None, timeout: int = 600,
            entry: tuple[str, ...] = ("-m", "eznas.cli")) -> subprocess.CompletedProcess:
    """Run ``python -m eznas.cli ARGS`` (or ``python ENTRY ARGS``) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    if DATA_DIR is not None:
        full_env.setdefault("EZNAS_DATA_DIR", str(DATA_DIR))
    return subprocess.run([sys.executable, *entry, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def tiny_config(evolve: tuple[str, ...] = ("nb201:cifar10",), pool_size: int = 6, sample_size: int = 5,
                population: int = 24, generations: int = 2, n_jobs: int = 2) -> str:
    """A tiny run config (TOML) for the tests that run the engine end to end in seconds."""
    tasks = ", ".join(f'"{t}"' for t in evolve)
    return f"""
[run]
seed = 7
n_jobs = {n_jobs}
backend = "loky"

[tasks]
evolve = [{tasks}]
heldout = ["nb201:cifar100"]
pool_size = {pool_size}
sample_size = {sample_size}
heldout_size = 8

[probe]
batch_size = 16
features = 32
weight_rows = 16
weight_cols = 16
max_layers = 8

[evolution]
population = {population}
generations = {generations}
tournament_size = 3
elites = 2
init_max_depth = 4
max_depth = 7
max_size = 25
hall_of_fame = 5
pool_fitness_top = 3
"""
