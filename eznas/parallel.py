"""Parallel execution of independent jobs, on one machine or a cluster, surviving bad jobs.

Every parallel step of eznas is a list of independent ``(function, args)`` jobs. `run_tasks`
runs them on one of five backends (`eznas.backends`: sequential, threading, loky, dask, ray)
with one `Parallel` settings object (backend, address, workers, retries, timeout) and yields
their results in submission order, so results never depend on the number of workers or on
where a job ran. What runs inside a worker (slot, device, threads) is `eznas.jobs`.

Faults
    A job that raises, whose worker process dies, or that runs longer than ``timeout`` seconds
    is run again, at most ``retries`` more times; then its result slot holds a `Failed` value
    instead of a result, and a warning on the ``eznas.parallel`` logger names the job. Every
    other slot holds what a clean run gives. A dead loky worker fails every job running at
    that moment, so those jobs are rerun one at a time: only a job that kills its worker while
    running alone is charged an attempt. On a timeout, loky kills its workers (the other jobs
    in flight rerun, uncharged); dask cancels the job and ends the worker process running it
    (its nanny, there by default, starts a fresh one); ray force-cancels it; threading cannot
    stop a thread, so the job is abandoned and its thread runs on. A job run in the calling
    process (sequential, or one worker) is retried when it raises, but its crash ends the
    caller and its timeout cannot be enforced (a warning says so).
"""


from __future__ import annotations

import concurrent.futures as cf
import heapq
import logging
import math
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eznas.backends import Pool, check_backend, in_process, open_pool, require
from eznas.errors import EznasError
from eznas.jobs import Job, Raised, call

log = logging.getLogger(__name__)
MAX_TIMEOUT = 7 * 24 * 3600.0  # seconds: the longest job timeout (--timeout, run.timeout)


@dataclass(frozen=True)
class Parallel:
    """Where and how the jobs of a parallel step run (the ``--backend/--address/--jobs/--retries/
    --timeout`` options, or a run config's ``[run]`` table).

    Attributes
    ----------
    backend : str
        ``"loky"``, ``"threading"``, ``"sequential"``, ``"dask"`` or ``"ray"``.
    address : str
        dask scheduler (``"tcp://host:8786"``) or ray cluster address; ``""`` starts a local one.
    jobs : int
        Workers: threads or processes (1: the calling process), or the local dask cluster's
        workers or ray's CPUs when no ``address`` is given. With a cluster it is the number of
        workers that share one machine's cores (torch threads per job = cores // jobs).
    retries : int
        Further attempts for a job that raises, kills its worker or times out.
    timeout : float, optional
        Seconds a job may run, counted from its start in a worker slot (so a new worker's
        start-up counts); None for no limit. Not enforced for jobs run in the calling process
        (the sequential backend, or loky and threading with ``jobs = 1``).
    """

    backend: str = "loky"
    address: str = ""
    jobs: int = 1
    retries: int = 2
    timeout: float | None = None

    def validate(self) -> None:
        """An `EznasError` for an unknown backend, a missing package or an out-of-range number."""
        require(self.backend, self.jobs)
        if self.retries < 0:
            raise EznasError(f"retries must be 0 or more, not {self.retries}")
        if self.timeout is not None and not self.timeout > 0:
            raise EznasError(f"a job timeout must be positive seconds (or none), not {self.timeout}")

    def check(self) -> None:
        """`validate`, and connect to the cluster at ``address`` (`eznas.backends.check_backend`), so that
        a command fails before any work."""
        self.validate()
        check_backend(self.backend, self.jobs, self.address)


@dataclass(frozen=True)
class Failed:
    """The result slot of a job that failed on every attempt.

    Attributes
    ----------
    error : str
        The last attempt's failure in one line, e.g. ``"ValueError: bad arch (probe.py:120 in
        probe)"``, ``"worker process died (exit codes {SIGKILL(-9)})"`` or ``"timed out after
        600 s"``.
    attempts : int
        Attempts charged to the job: ``retries + 1``.
    """

    error: str
    attempts: int


# ----------------------------------------------------------------------------- scheduling

@dataclass(frozen=True)
class _Attempt:
    """One run of a job: which job, in which worker slot, until when, alone or not."""

    index: int
    slot: int
    deadline: float
    alone: bool


class _Scheduler:
    """Runs the jobs of one `run_tasks` call on a pool and yields their results in order.

    At most ``pool.slots`` jobs are in flight, each in a free worker slot. Jobs whose worker
    died beside others (loky) become suspects, run one at a time. A failed attempt is retried
    until ``retries`` are used up; then the job's result is `Failed`.
    """

    def __init__(self, pool: Pool, jobs: Sequence[Job], retries: int, timeout: float | None,
                 labels: Sequence[str] | None) -> None:
        self.pool, self.jobs, self.retries, self.timeout, self.labels = pool, jobs, retries, timeout, labels
        self.results: dict[int, Any] = {}
        self.queue: deque[int] = deque(range(len(jobs)))
        self.suspects: list[int] = []
        self.running: dict[cf.Future, _Attempt] = {}
        self.free = list(range(pool.slots))
        self.charged = [0] * len(jobs)

    def __iter__(self) -> Iterator[Any]:
        done_upto = 0
        try:
            while done_upto < len(self.jobs):
                self._start_jobs()
                done, _ = cf.wait(self.running, timeout=self._time_left(), return_when=cf.FIRST_COMPLETED)
                for future in done:
                    self._collect(future)
                self._expire()
                while done_upto in self.results:
                    yield self.results.pop(done_upto)
                    done_upto += 1
        finally:
            self.pool.close(list(self.running))

    def _name(self, index: int) -> str:
        func = self.jobs[index][0]
        what = self.labels[index] if self.labels is not None else getattr(func, "__qualname__", repr(func))
        return f"job {index} ({what})"

    def _start_jobs(self) -> None:
        if self.suspects:
            if not self.running:
                self._start(self.suspects.pop(0), alone=True)
            return
        while self.queue and self.free:
            self._start(self.queue.popleft(), alone=False)

    def _start(self, index: int, alone: bool) -> None:
        slot = heapq.heappop(self.free)
        func, args = self.jobs[index]
        deadline = math.inf if self.timeout is None else time.monotonic() + self.timeout
        future = self.pool.submit(call, func, args, slot, self.pool.share, self.pool.children)
        self.running[future] = _Attempt(index, slot, deadline, alone)

    def _time_left(self) -> float | None:
        if self.timeout is None or not self.running:
            return None
        return max(0.0, min(a.deadline for a in self.running.values()) - time.monotonic())

    def _end(self, future: cf.Future) -> _Attempt:
        attempt = self.running.pop(future)
        heapq.heappush(self.free, attempt.slot)
        return attempt

    def _collect(self, future: cf.Future) -> None:
        attempt = self._end(future)
        try:
            value = future.result()
        except Exception as exc:  # the job's own errors come back as Raised: this is its worker
            if self.pool.breaks_together and self.pool.is_break(exc) and not attempt.alone:
                log.warning("%s: %s while it ran beside other jobs; rerunning it alone",
                            self._name(attempt.index), self.pool.lost(exc))
                self.suspects.append(attempt.index)
                self.suspects.sort()
            else:
                self._failed(attempt, self.pool.lost(exc))
            return
        if isinstance(value, Raised):
            self._failed(attempt, value.error)
        else:
            self.results[attempt.index] = value

    def _expire(self) -> None:
        if self.timeout is None:
            return
        now = time.monotonic()
        late = [f for f, a in self.running.items() if a.deadline <= now and not f.done()]
        if not late:
            return
        others_lost = self.pool.stop(late)
        for future in late:
            self._failed(self._end(future), f"timed out after {self.timeout:g} s")
        if others_lost:
            for future in list(self.running):
                if future.done() and future.exception() is None:
                    self._collect(future)
                else:  # stopped with the late job: not its fault, not charged
                    self.queue.appendleft(self._end(future).index)

    def _failed(self, attempt: _Attempt, error: str) -> None:
        index = attempt.index
        self.charged[index] += 1
        n = self.charged[index]
        if n > self.retries:
            log.warning("%s failed on all %d attempts, giving up: %s", self._name(index), n, error)
            self.results[index] = Failed(error, n)
        else:
            log.warning("%s: attempt %d of %d failed, retrying: %s", self._name(index), n, self.retries + 1, error)
            if attempt.alone:
                self.suspects.append(index)
            else:
                self.queue.appendleft(index)


# ----------------------------------------------------------------------------- entry point

def run_tasks(jobs: Sequence[Job], parallel: Parallel = Parallel(), *,
              labels: Sequence[str] | None = None) -> Iterator[Any]:
    """Run ``jobs`` as ``parallel`` says and yield their results in submission order, lazily.

    Parameters
    ----------
    jobs : sequence of (function, args)
        Independent jobs; each result is ``function(*args)``. With a process or cluster
        backend, functions, arguments and results must pickle (module-level functions do).
    parallel : Parallel
        Backend, address, workers, retries and timeout.
    labels : sequence of str, optional
        A name for each job, used in log lines (default: the function's name).

    Yields
    ------
    object
        Each job's result, or a `Failed` for a job that failed on all ``retries + 1`` attempts.

    Raises
    ------
    EznasError
        An unknown backend, a missing optional package (dask, ray), an unreachable cluster,
        or an out-of-range ``jobs``, ``retries`` or ``timeout``.
    """
    parallel.validate()
    if labels is not None and len(labels) != len(jobs):
        raise ValueError(f"{len(labels)} labels for {len(jobs)} jobs")
    if parallel.timeout is not None and in_process(parallel.backend, parallel.jobs):
        warnings.warn(f"backend {parallel.backend!r} with {parallel.jobs} worker(s) runs jobs in the calling process "
                      "and cannot enforce a job timeout; use loky with 2 or more workers", RuntimeWarning, stacklevel=2)
    return _results(list(jobs), parallel, labels)


def _results(jobs: list[Job], parallel: Parallel, labels: Sequence[str] | None) -> Iterator[Any]:
    if jobs:  # the pool (a local cluster, maybe) opens at the first result asked for
        pool = open_pool(parallel.backend, parallel.jobs, parallel.address, len(jobs))
        yield from _Scheduler(pool, jobs, parallel.retries, parallel.timeout, labels)
