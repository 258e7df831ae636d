"""`eznas.parallel.run_tasks`: results in order on every local backend, retries and `Failed`
slots for jobs that raise, kill their worker or time out, a run with a failing worker that
otherwise matches a clean run, and the worker-slot device and thread assignment."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eznas.errors import EznasError
from eznas.backends import check_backend
from eznas.jobs import current_device, worker_device, worker_threads
from eznas.parallel import Failed, Parallel, run_tasks

LOCAL = ["sequential", "threading", "loky"]
RELEASE = threading.Event()  # lets abandoned threading jobs finish when the test is over


# Jobs. Module-level so that loky workers can unpickle them; no torch import, so that
# workers (re)start fast.

def square_late(i: int, n: int) -> int:
    """i * i, the earlier jobs finishing last."""
    time.sleep(0.02 * (n - i))
    return i * i


def raise_counting(log: str) -> None:
    with open(log, "a") as f:
        f.write("x")
    raise ValueError("bad network")


def die_once(marker: str, value: int) -> int:
    """Kill the worker process the first time (marker absent), then return ``value``."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return value


def die() -> None:
    os._exit(1)


def hang(seconds: float) -> None:
    RELEASE.wait(seconds)


def record_device(seconds: float) -> tuple[str, float, float]:
    start = time.monotonic()
    device = current_device()
    time.sleep(seconds)
    return device, start, time.monotonic()


@pytest.fixture(autouse=True)
def _release_threads():
    RELEASE.clear()
    yield
    RELEASE.set()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "eznas.parallel" and r.levelno == logging.WARNING]


# ----------------------------------------------------------------------------- order

@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("backend", LOCAL)
def test_results_come_back_in_submission_order(backend, n_jobs):
    n = 8
    results = run_tasks([(square_late, (i, n)) for i in range(n)], Parallel(jobs=n_jobs, backend=backend))
    assert iter(results) is results  # lazy: a generator
    assert list(results) == [i * i for i in range(n)]


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_one_local_worker_is_the_calling_process_as_in_joblib(backend):
    assert list(run_tasks([(os.getpid, ())] * 2, Parallel(jobs=1, backend=backend))) == [os.getpid()] * 2
    if backend == "loky":
        assert os.getpid() not in run_tasks([(os.getpid, ())] * 4, Parallel(jobs=2, backend=backend))


def test_no_jobs_and_bad_arguments():
    assert list(run_tasks([], Parallel(jobs=2, backend="loky"))) == []
    with pytest.raises(EznasError, match="unknown backend 'spark'"):
        run_tasks([(abs, (1,))], Parallel(backend="spark"))
    with pytest.raises(EznasError, match="must be 1 to 256, not 0"):
        run_tasks([(abs, (1,))], Parallel(jobs=0))
    with pytest.raises(EznasError, match="must be 1 to 256, not 1000"):
        run_tasks([(abs, (1,))], Parallel(jobs=1000))
    with pytest.raises(EznasError, match="timeout"):
        run_tasks([(abs, (1,))], Parallel(timeout=0))
    with pytest.raises(EznasError, match="retries"):
        run_tasks([(abs, (1,))], Parallel(retries=-1))


def test_check_backend_refuses_bad_settings_before_a_run():
    check_backend("loky", 2)
    with pytest.raises(EznasError, match="unknown backend 'spark'"):
        check_backend("spark")
    with pytest.raises(EznasError, match="must be 1 to 256, not 0"):
        check_backend("threading", 0)


@pytest.mark.parametrize("backend, extra", [("ray", "eznas[ray]"), ("dask", "eznas[dask]")])
def test_missing_cluster_package_is_a_clear_error(monkeypatch, backend, extra):
    module = "ray" if backend == "ray" else "dask.distributed"
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(EznasError, match=re.escape(f"pip install '{extra}'")):
        run_tasks([(abs, (1,))], Parallel(backend=backend))
    with pytest.raises(EznasError, match=re.escape(f"pip install '{extra}'")):
        check_backend(backend, address="tcp://127.0.0.1:8786")


# ----------------------------------------------------------------------------- faults

@pytest.mark.parametrize("backend", LOCAL)
def test_raising_job_is_retried_then_failed(backend, tmp_path, caplog):
    log = tmp_path / "attempts"
    jobs = [(abs, (-1,)), (raise_counting, (str(log),)), (abs, (-3,))]
    results = list(run_tasks(jobs, Parallel(jobs=2, backend=backend, retries=2), labels=["a", "network #7", "c"]))
    assert results[0] == 1 and results[2] == 3
    failed = results[1]
    assert isinstance(failed, Failed) and failed.attempts == 3
    assert failed.error.startswith("ValueError: bad network") and "raise_counting" in failed.error
    assert log.read_text() == "xxx"
    messages = _warnings(caplog)
    assert sum("attempt" in m and "retrying" in m for m in messages) == 2
    assert any(m.startswith("job 1 (network #7) failed on all 3 attempts") for m in messages)


def test_no_retries_means_one_attempt(tmp_path):
    (result,) = run_tasks([(raise_counting, (str(tmp_path / "log"),))], Parallel(backend="sequential", retries=0))
    assert result == Failed(result.error, 1)


def test_job_killing_its_worker_once_is_rerun_and_succeeds(tmp_path, caplog):
    n = 6
    jobs = [(square_late, (i, n)) for i in range(n)]
    jobs[3] = (die_once, (str(tmp_path / "died"), 9))
    results = list(run_tasks(jobs, Parallel(jobs=2, backend="loky", retries=0)))
    assert results == [i * i for i in range(n)]  # nothing charged: retries=0 still succeeds
    assert (tmp_path / "died").exists()
    assert any("job 3 (die_once): worker process died" in m and "rerunning it alone" in m for m in _warnings(caplog))


def test_job_always_killing_its_worker_fails_alone(caplog):
    jobs = [(abs, (-i,)) for i in range(5)]
    jobs[2] = (die, ())
    results = list(run_tasks(jobs, Parallel(jobs=2, backend="loky", retries=1)))
    assert results[:2] == [0, 1] and results[3:] == [3, 4]
    assert results[2] == Failed("worker process died (exit codes {EXIT(1)})", 2)
    assert any(m.startswith("job 2 (die) failed on all 2 attempts") for m in _warnings(caplog))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_timeout_yields_failed_and_the_other_jobs_finish(backend, caplog):
    jobs = [(abs, (-i,)) for i in range(6)]
    jobs[1] = (hang, (60.0,))
    start = time.monotonic()
    results = list(run_tasks(jobs, Parallel(jobs=2, backend=backend, retries=1, timeout=4.0)))
    assert time.monotonic() - start < 40
    assert results[1] == Failed("timed out after 4 s", 2)
    assert results[:1] + results[2:] == [0, 2, 3, 4, 5]
    assert any(m.startswith("job 1 (hang) failed on all 2 attempts") for m in _warnings(caplog))


@pytest.mark.parametrize("backend", ["sequential", "loky"])
def test_jobs_in_the_calling_process_say_they_cannot_time_out(backend):
    with pytest.warns(RuntimeWarning, match="cannot enforce a job timeout"):
        results = run_tasks([(abs, (-2,))], Parallel(jobs=1, backend=backend, timeout=1.0))
    assert list(results) == [2]


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_run_with_failing_workers_matches_clean_run_except_failed_slots(backend, tmp_path, caplog):
    """Mid-run, one job raises on every attempt and (loky) one kills its worker once: the run
    finishes, both are logged by job, and every other result is the clean run's."""
    n = 16
    clean = list(run_tasks([(square_late, (i, n)) for i in range(n)], Parallel(jobs=2, backend=backend)))
    jobs = [(square_late, (i, n)) for i in range(n)]
    jobs[5] = (raise_counting, (str(tmp_path / "log"),))
    if backend == "loky":
        jobs[9] = (die_once, (str(tmp_path / "died"), 81))
    results = list(run_tasks(jobs, Parallel(jobs=2, backend=backend, retries=2)))
    assert isinstance(results[5], Failed) and "ValueError" in results[5].error
    assert results[:5] + results[6:] == clean[:5] + clean[6:]
    messages = _warnings(caplog)
    assert any(m.startswith("job 5 (raise_counting) failed on all 3 attempts") for m in messages)
    if backend == "loky":
        assert any(m.startswith("job 9 (die_once)") for m in messages)


# ----------------------------------------------------------------------------- devices, threads

def test_devices_round_robin_over_cuda_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [worker_device(s) for s in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert current_device() == "cuda:0"  # outside a job: slot 0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert worker_device(4) == current_device() == "cpu"


def test_running_jobs_hold_distinct_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    runs = list(run_tasks([(record_device, (0.05,)) for _ in range(8)], Parallel(jobs=2, backend="threading")))
    assert {d for d, _, _ in runs} == {"cuda:0", "cuda:1"}
    for i, (dev_a, start_a, end_a) in enumerate(runs):
        for dev_b, start_b, end_b in runs[i + 1:]:
            if start_a < end_b and start_b < end_a:  # ran at the same time
                assert dev_a != dev_b
    runs = run_tasks([(record_device, (0.0,)) for _ in range(3)], Parallel(jobs=2, backend="sequential"))
    assert [d for d, _, _ in runs] == ["cuda:0"] * 3


def test_worker_threads_share_the_cores():
    assert worker_threads(4, cores=16) == 4
    assert worker_threads(3, cores=16) == 5
    assert worker_threads(32, cores=16) == 1


def test_worker_processes_run_with_their_share_of_threads():
    import torch

    # the job function is torch's own, so torch is loaded in the worker before the job starts
    threads = list(run_tasks([(torch.get_num_threads, ())] * 4, Parallel(jobs=2, backend="loky")))
    assert threads == [worker_threads(2)] * 4


def test_threading_backend_restores_the_callers_torch_threads():
    import torch

    before = torch.get_num_threads()
    assert list(run_tasks([(torch.get_num_threads, ())] * 2, Parallel(jobs=64, backend="threading"))) == [1, 1]
    assert torch.get_num_threads() == before



def test_a_dask_client_whose_event_loop_did_not_start_is_made_once_more():
    from eznas.backends import _new_client

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise AssertionError  # what distributed's LoopRunner raises after 10 s without a loop
        return "client"

    assert _new_client(flaky) == "client" and len(calls) == 2

    def broken() -> str:
        raise AssertionError

    with pytest.raises(AssertionError):
        _new_client(broken)


_HOLD = '''import os, time

def hold(directory):
    """A long job that says where it runs."""
    with open(os.path.join(directory, str(os.getpid())), "w"):
        pass
    time.sleep(300)
'''


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to see processes")
def test_loky_workers_end_when_their_parent_is_killed(tmp_path):
    (tmp_path / "hold.py").write_text(_HOLD)
    pids = tmp_path / "pids"
    pids.mkdir()
    script = ("import sys\nfrom hold import hold\nfrom eznas.parallel import Parallel, run_tasks\n"
              f"list(run_tasks([(hold, ({str(pids)!r},))] * 2, Parallel(jobs=2, backend='loky')))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "orphaned loky workers still running"
