"""`eznas.resident`: a value shared by many jobs reaches each worker process once and stays there
(also past loky's leak guard), is never copied in the calling process, and is never confused
with another value."""

from __future__ import annotations

import copy
import os
import pickle
import time

import numpy as np
import pytest

from eznas import resident
from joblib.externals.loky import get_reusable_executor

from eznas.backends import _LokyPool, close_clusters
from eznas.parallel import Parallel
from eznas.resident import Missing, Resident, resolve, run_with

BUILDS: list[int] = []  # per process: the length of every value built from (each test's values have their own)


# Jobs and builders: module-level so that loky workers can unpickle them.

def build(value: np.ndarray) -> dict:
    BUILDS.append(len(value))
    return {"value": value}


def look(built: dict, i: int) -> tuple[int, int, int, float]:
    """Where the job ran, what it saw, and how many times its process built a value of that length."""
    return os.getpid(), id(built["value"]), BUILDS.count(len(built["value"])), float(built["value"][i])


def look_slowly(built: dict, i: int) -> tuple[int, int, int, float]:
    """`look`, a little later: jobs in flight together land in different workers."""
    time.sleep(0.3)
    return look(built, i)


@pytest.fixture(autouse=True)
def _empty_registry():
    resident._KEPT.clear()
    BUILDS.clear()
    yield
    resident._KEPT.clear()


@pytest.mark.parametrize("backend, n_jobs", [("sequential", 1), ("threading", 2), ("loky", 1)])
def test_jobs_in_the_calling_process_share_the_value_itself(backend, n_jobs):
    value = np.arange(10.0)
    handle = Resident("v1", value)
    for _ in range(2):
        results = run_with(look, handle, build, [(i,) for i in range(6)], [str(i) for i in range(6)],
                           Parallel(jobs=n_jobs, backend=backend))
        assert [r[3] for r in results] == list(range(6))
        assert {r[1] for r in results} == {id(value)}  # not a copy
    assert BUILDS == [10]  # built once, kept for the second call


@pytest.mark.slow
def test_a_worker_process_receives_the_value_once_and_keeps_it():
    """Two loky workers; each gets the value carried once, and keeps it through later calls
    even when it holds far more memory than loky's leak guard allows (300 MB)."""
    # a fresh two-worker executor: one kept from an earlier test may have more workers
    get_reusable_executor().shutdown(wait=True, kill_workers=True)
    _LokyPool._started = 0
    value = np.arange(45_000_000, dtype=np.float64)  # 360 MB
    handle = Resident("big", value)
    pids: set[int] = set()
    for _ in range(3):
        results = run_with(look, handle, build, [(i,) for i in range(4)], [str(i) for i in range(4)],
                           Parallel(jobs=2, backend="loky"))
        assert [r[3] for r in results] == [0.0, 1.0, 2.0, 3.0]
        assert all(builds == 1 for _, _, builds, _ in results)  # each worker built the value once
        pids |= {pid for pid, _, _, _ in results}
        time.sleep(1.5)  # past the leak guard's 1 s between checks
    assert len(pids) <= 2  # no worker was replaced
    assert BUILDS == []  # nothing was built in this process


def test_another_value_is_another_key():
    a, b = Resident("a", np.zeros(3)), Resident("b", np.ones(3))
    args, labels = [(0,), (1,)], ["0", "1"]
    assert [r[3] for r in run_with(look, a, build, args, labels, Parallel(jobs=2, backend="loky"))] == [0.0, 0.0]
    assert [r[3] for r in run_with(look, b, build, args, labels, Parallel(jobs=2, backend="loky"))] == [1.0, 1.0]
    assert [r[3] for r in run_with(look, a, build, args, labels, Parallel(jobs=2, backend="loky"))] == [0.0, 0.0]


def test_a_dask_worker_gets_the_value_carried_once():
    """dask copies a job's arguments before it pickles them: a copy must carry as the original."""
    pytest.importorskip("dask.distributed")
    handle = Resident("d", np.arange(4.0))
    try:
        for _ in range(2):
            results = run_with(look, handle, build, [(i,) for i in range(4)], [str(i) for i in range(4)],
                               Parallel(jobs=2, backend="dask"))
            assert [r[3] for r in results] == [0.0, 1.0, 2.0, 3.0] and all(r[2] == 1 for r in results)
    finally:
        close_clusters()


def test_a_handle_pickles_without_its_value_unless_carrying():
    handle = Resident("k", np.arange(5.0))
    assert pickle.loads(pickle.dumps(copy.copy(handle.carrying()))).value is not None
    bare = pickle.loads(pickle.dumps(copy.copy(handle)))
    assert bare.key == "k" and bare.value is None
    assert resolve(bare, build) is None  # this process holds nothing for "k" yet
    carried = pickle.loads(pickle.dumps(handle.carrying()))
    assert resolve(carried, build)["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert resolve(bare, build) is resolve(carried, build)  # kept under the key


def test_a_process_keeps_the_last_values_only():
    handles = [Resident(str(k), np.full(2, float(k))) for k in range(resident.KEEP + 1)]
    for h in handles:
        resolve(h, build)
    assert resolve(Resident("0", None), build) is None  # the oldest went
    assert resolve(Resident(str(resident.KEEP), None), build)["value"][0] == resident.KEEP


def test_a_job_without_the_value_says_so():
    assert resident._call_with(look, Resident("nowhere", None), build, 0) == Missing("nowhere")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_call_with_fewer_jobs_keeps_the_workers_and_what_they_hold():
    """A resend of one job, or the singles after a failed chunk, must not shrink the loky pool
    (loky would end a worker, and what it holds, to shrink it)."""
    handle = Resident("s", np.arange(7.0))
    started: set[int] = set()
    for n in (6, 1, 6):
        results = run_with(look_slowly, handle, build, [(i,) for i in range(n)], [str(i) for i in range(n)],
                           Parallel(jobs=3, backend="loky"))
        assert [r[3] for r in results] == [float(i) for i in range(n)] and all(r[2] == 1 for r in results)
        started |= {r[0] for r in results}
    assert all(_alive(pid) for pid in started)
