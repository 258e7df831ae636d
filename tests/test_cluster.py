"""The same run on a dask cluster: a `dask.distributed` LocalCluster on loopback with two worker
processes; `eznas evolve --backend dask --address ...` (statistics and fitness computed on the
cluster) gives exactly the hall of fame of `--backend loky` with the same seed; and the cluster
survives a job that raises, kills its worker or hangs."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest

from conftest import needs_data, run_cli, tiny_config

distributed = pytest.importorskip("dask.distributed",
                                  reason="dask.distributed not installed: pip install 'eznas[dask]'")

from eznas.errors import EznasError  # noqa: E402
from eznas.backends import check_backend, close_clusters
from eznas.parallel import Failed, Parallel, run_tasks  # noqa: E402

pytestmark = pytest.mark.slow  # local dask clusters


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        yield local
        close_clusters()  # eznas's client of this cluster, before the cluster goes


@needs_data
def test_dask_cluster_gives_the_hall_of_fame_of_loky(cluster, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(tiny_config())  # one NB201 task: its networks probe in seconds, once per backend
    checkpoints = {}
    for backend, extra in (("dask", ("--address", cluster.scheduler_address)), ("loky", ())):
        out = tmp_path / backend
        r = run_cli("evolve", str(config), "--out", str(out), "--backend", backend, *extra,
                    "--cache-dir", str(tmp_path / f"cache_{backend}"))
        assert r.returncode == 0, r.stderr
        checkpoints[backend] = json.loads((out / "checkpoint.json").read_text())
    assert json.loads((tmp_path / "dask" / "config.json").read_text())["run"]["backend"] == "dask"
    dask_hof, loky_hof = checkpoints["dask"]["hall_of_fame"], checkpoints["loky"]["hall_of_fame"]
    assert len(dask_hof) >= 1
    assert dask_hof == loky_hof
    assert checkpoints["dask"]["population"] == checkpoints["loky"]["population"]


def test_bad_scheduler_address_is_a_clear_error():
    with pytest.raises(EznasError, match="cannot reach the dask scheduler at 'nonsense://x'"):
        check_backend("dask", 2, "nonsense://x")


def times_ten(i: int) -> int:
    return 10 * i


def raise_always() -> None:
    raise RuntimeError("probe failed")


def die_once(marker: str, value: int) -> int:
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return value


def sleep_for(seconds: float) -> None:
    time.sleep(seconds)


def test_cluster_survives_raising_dying_and_hanging_jobs(cluster, tmp_path):
    jobs = [(times_ten, (i,)) for i in range(8)]
    jobs[2] = (raise_always, ())
    jobs[4] = (die_once, (str(tmp_path / "died"), 40))
    jobs[6] = (sleep_for, (120.0,))
    results = list(run_tasks(jobs,
                             Parallel(backend="dask", address=cluster.scheduler_address, retries=1, timeout=20.0)))
    assert results[2] == Failed(results[2].error, 2) and "RuntimeError: probe failed" in results[2].error
    assert results[6] == Failed("timed out after 20 s", 2)
    assert [r for i, r in enumerate(results) if i not in (2, 6)] == [0, 10, 30, 40, 50, 70]
    assert (tmp_path / "died").exists()
    with distributed.Client(cluster.scheduler_address) as client:  # the hung job's worker was restarted
        client.wait_for_workers(2, timeout=60)
        assert list(run_tasks([(times_ten, (i,)) for i in range(4)],
                              Parallel(backend="dask", address=cluster.scheduler_address))) == [0, 10, 20, 30]


@needs_data
@pytest.mark.slow
def test_evaluate_on_a_dask_cluster_survives_a_worker_killed_mid_run(tmp_path, monkeypatch):
    """``eznas evaluate --backend dask``: the second network's job kills its worker (SIGKILL); dask
    reruns it on a fresh worker, and the table is that of a clean local run."""
    plan = tmp_path / "plan" / "plan.json"
    plan.parent.mkdir()
    plan.write_text(json.dumps([{"job": "score", "mode": "kill", "skip": 1, "times": 1}]))
    monkeypatch.setenv("EZNAS_FAULT_PLAN", str(plan))  # before the cluster starts: its workers read the plan
    args = ("evaluate", "params", "--compare", "flops", "--task", "nb201:cifar10", "--n", "4")
    clean = run_cli(*args, "--out", str(tmp_path / "clean"), "--cache-dir", str(tmp_path / "clean_cache"))
    assert clean.returncode == 0, clean.stderr
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        r = run_cli(*args, "--out", str(tmp_path / "dask"), "--cache-dir", str(tmp_path / "dask_cache"),
                    "--backend", "dask", "--address", local.scheduler_address, "--jobs", "2",
                    env={"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])},
                    entry=("-c", "import fault_plan; fault_plan.main()"))
    assert r.returncode == 0, r.stderr
    assert (plan.parent / "rule0.1").exists()  # the second call was the one that killed its worker

    def table(name: str) -> list[dict]:
        rows = list(csv.DictReader((tmp_path / f"{name}.csv").open()))
        return [{k: v for k, v in row.items() if k != "seconds_per_net"} for row in rows]

    assert table("dask") == table("clean") and all(row["failed"] == "0" for row in table("dask"))
