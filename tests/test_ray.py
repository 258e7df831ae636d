"""The same run on ray: a local ray (``ray.init(num_cpus=2)``, started by eznas) gives exactly the hall of
fame and population of loky with the same seed, and a job that raises comes back as `Failed`."""

from __future__ import annotations

import json
import operator

import pytest

from conftest import needs_data, run_cli, tiny_config

pytest.importorskip("ray", reason="ray not installed: pip install 'eznas[ray]'")

from eznas.parallel import Failed, Parallel, run_tasks  # noqa: E402

pytestmark = pytest.mark.slow


@needs_data
def test_local_ray_gives_the_hall_of_fame_of_loky(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_config())
    checkpoints = {}
    for backend in ("ray", "loky"):
        out = tmp_path / backend
        r = run_cli("evolve", str(config), "--out", str(out), "--backend", backend, "--jobs", "2",
                    "--cache-dir", str(tmp_path / f"cache_{backend}"))
        assert r.returncode == 0, r.stderr
        checkpoints[backend] = json.loads((out / "checkpoint.json").read_text())
    assert json.loads((tmp_path / "ray" / "config.json").read_text())["run"]["backend"] == "ray"
    assert len(checkpoints["ray"]["hall_of_fame"]) >= 1
    assert checkpoints["ray"]["hall_of_fame"] == checkpoints["loky"]["hall_of_fame"]
    assert checkpoints["ray"]["population"] == checkpoints["loky"]["population"]


def test_ray_jobs_come_back_in_order_and_failures_as_failed():
    # stdlib functions: ray workers import a job's function by name, and this test file is not importable there
    jobs = [(operator.mul, (i, 2)) for i in range(5)]
    jobs[3] = (int, ("not a number",))
    results = list(run_tasks(jobs, Parallel(jobs=2, backend="ray", retries=1)))
    assert results[:3] == [0, 2, 4] and results[4] == 8
    assert isinstance(results[3], Failed) and results[3].attempts == 2 and "ValueError" in results[3].error
