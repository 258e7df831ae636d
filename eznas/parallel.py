"""Parallel execution of independent jobs, on one machine or a cluster, surviving bad jobs.

Every parallel step of eznas is a list of independent ``(function, args)`` jobs. `run_tasks`
runs them on one of five backends and yields their results in submission order, so results
never depend on the number of workers or on where a job ran:

============  ==================================================================================
sequential    in the calling process, one job at a time
threading     ``n_jobs`` threads in the calling process (``n_jobs = 1``: as sequential)
loky          ``n_jobs`` worker processes (joblib's loky executor, kept between calls;
              ``n_jobs = 1``: as sequential, joblib's convention)
dask          a ``dask.distributed`` cluster: the scheduler at ``address``, or a local cluster
              of ``n_jobs`` single-threaded worker processes on 127.0.0.1 (kept for the process)
ray           the ray cluster at ``address``, or a local one with ``n_jobs`` CPUs
============  ==================================================================================

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

Devices and threads
    Each running job holds a worker slot 0 .. n-1 that no other running job holds;
    `current_device` inside a job gives ``cuda:<slot mod device count>`` on a machine with
    CUDA devices and ``cpu`` without. Jobs in worker threads and processes run with
    ``max(1, cores // n_jobs)`` torch threads (`worker_threads`) when torch is loaded.
"""

from __future__ import annotations

import abc
import atexit
import concurrent.futures as cf
import contextvars
import functools
import heapq
import logging
import math
import os
import re
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from eznas.errors import EznasError

Job = tuple[Callable[..., Any], tuple[Any, ...]]
BACKENDS = ("loky", "threading", "sequential", "dask", "ray")
LOKY_IDLE_SECONDS = 300  # loky workers idle this long exit; kept alive between generations
CONNECT_SECONDS = 30  # waiting for a dask scheduler to answer and to have a worker

log = logging.getLogger(__name__)
_SLOT: contextvars.ContextVar[int] = contextvars.ContextVar("eznas_worker_slot", default=0)
_CLIENTS: dict[tuple[str, int], Any] = {}  # (address, local workers) -> dask Client, kept for the process


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


@dataclass(frozen=True)
class _Raised:
    """What a worker returns for a job that raised: the error in one line (always picklable)."""

    error: str


# ----------------------------------------------------------------------------- devices, threads

def worker_device(slot: int) -> str:
    """The device of worker slot ``slot``: the machine's CUDA devices round-robin, else the CPU.

    Parameters
    ----------
    slot : int
        A worker slot, 0 to n_jobs - 1.

    Returns
    -------
    str
        ``"cuda:<slot mod torch.cuda.device_count()>"``, or ``"cpu"`` with no CUDA device.
    """
    import torch  # here, not at the top: workers of torch-free jobs start without loading torch

    count = torch.cuda.device_count()
    return f"cuda:{slot % count}" if count else "cpu"


def current_device() -> str:
    """The device of the running job (inside a job of `run_tasks`; elsewhere, slot 0's device).

    Returns
    -------
    str
        ``"cuda:K"`` or ``"cpu"``, usable as ``torch.device(current_device())``.
    """
    return worker_device(_SLOT.get())


def worker_threads(n_jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``n_jobs`` workers sharing a machine's cores.

    Parameters
    ----------
    n_jobs : int
        Workers running at once on the machine.
    cores : int, optional
        The machine's CPU count (default: ``os.cpu_count()``).

    Returns
    -------
    int
        ``max(1, cores // n_jobs)``.
    """
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, n_jobs))


def _call(func: Callable[..., Any], args: tuple[Any, ...], slot: int, share: int) -> Any:
    """Run one job where it landed: set its slot and thread count; an exception becomes `_Raised`.

    ``share`` is the number of workers sharing this machine's cores (0: leave torch threads as
    they are). Torch threads are set only when the job's code has loaded torch.
    """
    torch = sys.modules.get("torch")
    if share and torch is not None:
        threads = worker_threads(share)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    token = _SLOT.set(slot)
    try:
        return func(*args)
    except Exception as exc:
        return _Raised(_describe(exc))
    finally:
        _SLOT.reset(token)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _describe(exc: Exception) -> str:
    """An exception in one line, with the place it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return _one_line(exc) + where


# ----------------------------------------------------------------------------- backends

class _Pool(abc.ABC):
    """A backend as the scheduler sees it: submit a call, stop late calls, clean up.

    Attributes
    ----------
    slots : int
        Jobs run at once.
    share : int
        Workers sharing a machine's cores, for the torch thread count (0: leave it).
    breaks_together : bool
        Whether one dead worker fails every job in flight (loky).
    """

    slots = 1
    share = 0
    breaks_together = False

    @abc.abstractmethod
    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        """Start ``func(*args)``; returns its future."""

    def stop(self, futures: list[cf.Future]) -> bool:
        """Stop timed-out jobs; returns whether the other jobs in flight were lost too."""
        return False

    def is_break(self, exc: BaseException) -> bool:
        """Whether ``exc`` from a future means the whole pool broke (see ``breaks_together``)."""
        return False

    def lost(self, exc: BaseException) -> str:
        """One line saying why a job's worker gave no result."""
        return f"worker lost: {_one_line(exc, limit=160)}"

    def close(self, futures: list[cf.Future]) -> None:
        """End of a `run_tasks` call; ``futures`` still running (after an interruption) are dropped."""


class _InProcessPool(_Pool):
    """sequential, or one worker: each job runs in the caller at submission (no timeout, no crash
    isolation)."""

    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(func(*args))
        return future


class _ThreadPool(_Pool):
    """threading: ``n_jobs`` threads of the caller; a timed-out job is abandoned, not stopped."""

    def __init__(self, n_jobs: int) -> None:
        self.slots = self.share = n_jobs
        torch = sys.modules.get("torch")
        self._torch_threads = torch.get_num_threads() if torch is not None else 0
        self._executor = cf.ThreadPoolExecutor(n_jobs, thread_name_prefix="eznas-job")

    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        return self._executor.submit(func, *args)

    def stop(self, futures: list[cf.Future]) -> bool:
        # a thread cannot be stopped: leave the late ones running and go on with fresh threads
        self._executor.shutdown(wait=False)
        self._executor = cf.ThreadPoolExecutor(self.slots, thread_name_prefix="eznas-job")
        return False

    def close(self, futures: list[cf.Future]) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        torch = sys.modules.get("torch")
        if self._torch_threads and torch is not None:
            torch.set_num_threads(self._torch_threads)


class _LokyPool(_Pool):
    """loky: joblib's reusable process executor, replaced when a worker dies or on a timeout."""

    breaks_together = True

    def __init__(self, n_jobs: int) -> None:
        self.slots = self.share = n_jobs
        # loky's leak guard replaces a worker whose memory grew by a few hundred MB (torch's allocator
        # keeps what large networks used) and warns of it; the jobs go on in the new worker
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given to the executor",
                                category=UserWarning)
        self._executor = self._get()

    def _get(self) -> Any:
        return get_reusable_executor(max_workers=self.slots, timeout=LOKY_IDLE_SECONDS)

    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        try:
            return self._executor.submit(func, *args)
        except (BrokenProcessPool, ShutdownExecutorError):  # broken by a dead worker or a timeout
            self._executor = self._get()
            return self._executor.submit(func, *args)

    def stop(self, futures: list[cf.Future]) -> bool:
        self._executor.shutdown(wait=False, kill_workers=True)
        return True

    def is_break(self, exc: BaseException) -> bool:
        return isinstance(exc, (BrokenProcessPool, ShutdownExecutorError))

    def lost(self, exc: BaseException) -> str:
        codes = re.search(r"exit codes of the workers are (\{.*?\})", str(exc))
        return "worker process died" + (f" (exit codes {codes.group(1)})" if codes else f": {_one_line(exc)}")

    def close(self, futures: list[cf.Future]) -> None:
        if futures:  # interrupted: stop the work instead of finishing it
            self._executor.shutdown(wait=False, kill_workers=True)


class _DaskPool(_Pool):
    """dask: futures on a ``dask.distributed`` client (dask reruns tasks of dead workers itself)."""

    def __init__(self, n_jobs: int, address: str) -> None:
        self._client = _dask_client(n_jobs, address)
        self.slots = max(1, sum(self._client.nthreads().values()))
        self.share = n_jobs
        self._tasks: dict[cf.Future, Any] = {}

    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        task = self._client.submit(func, *args, pure=False)
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        self._tasks[future] = task
        task.add_done_callback(functools.partial(self._relay, future))
        return future

    def _relay(self, future: cf.Future, task: Any) -> None:
        self._tasks.pop(future, None)
        try:
            future.set_result(task.result())
        except BaseException as exc:  # the task's error (KilledWorker, cancelled, ...) is the future's
            future.set_exception(exc)

    def stop(self, futures: list[cf.Future]) -> bool:
        processing = self._client.processing()
        for future in futures:
            task = self._tasks.pop(future, None)
            if task is None:
                continue
            workers = [w for w, keys in processing.items() if task.key in keys]
            task.cancel()
            if workers:  # a running task cannot be interrupted: end its worker (its nanny starts a new one)
                self._client.run(_end_worker_process, workers=workers, wait=False)
        return False

    def close(self, futures: list[cf.Future]) -> None:
        for future in futures:
            task = self._tasks.pop(future, None)
            if task is not None:
                task.cancel()


class _RayPool(_Pool):
    """ray: remote calls without ray's own retries (the scheduler retries)."""

    def __init__(self, n_jobs: int, address: str) -> None:
        self._ray = ray = _ray_session(n_jobs, address)
        self._remote = ray.remote(max_retries=0)(_call)
        self.slots = max(1, int(ray.cluster_resources().get("CPU", n_jobs)))
        self.share = n_jobs
        self._refs: dict[cf.Future, Any] = {}

    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        ref = self._remote.remote(func, *args)
        future = ref.future()
        self._refs[future] = ref
        future.add_done_callback(lambda done: self._refs.pop(done, None))
        return future

    def stop(self, futures: list[cf.Future]) -> bool:
        self.close(futures)
        return False

    def close(self, futures: list[cf.Future]) -> None:
        for future in futures:
            ref = self._refs.pop(future, None)
            if ref is not None:
                self._ray.cancel(ref, force=True)


def _ray_session(n_jobs: int, address: str) -> Any:
    """The ray module, connected to the cluster at ``address`` (or to a local ray of ``n_jobs`` CPUs)."""
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address=address or None, num_cpus=None if address else n_jobs)
        except ConnectionError as exc:
            raise EznasError(f"cannot reach the ray cluster at {address!r} ({_one_line(exc)}); "
                             "start it with 'ray start --head' or fix --address") from None
        atexit.register(ray.shutdown)
    return ray


async def _end_worker_process() -> None:
    """Run on a dask worker's event loop: end its process at once (its nanny starts a new one)."""
    os._exit(1)


def _new_client(make: Callable[[], Any]) -> Any:
    """``make()``, tried once more if distributed's client event-loop thread did not start:
    `distributed.utils.LoopRunner` waits 10 s for it and then fails an ``assert``, which a
    loaded machine can hit (seen in a full test run); a second thread starts as usual."""
    try:
        return make()
    except AssertionError:
        return make()


def _dask_client(n_jobs: int, address: str) -> Any:
    """The process's client of the scheduler at ``address`` (or of a local cluster of ``n_jobs``)."""
    key = (address, 0 if address else n_jobs)
    client = _CLIENTS.get(key)
    if client is not None and client.status == "running":
        return client
    from dask.distributed import Client, LocalCluster

    if address:
        try:
            client = _new_client(lambda: Client(address, timeout=CONNECT_SECONDS))
        except (OSError, TimeoutError, ValueError) as exc:
            raise EznasError(f"cannot reach the dask scheduler at {address!r} ({_one_line(exc)}); start one "
                             "with 'dask scheduler' and 'dask worker ADDRESS', or fix --address") from None
    else:
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = _new_client(lambda: Client(cluster))
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except TimeoutError:
        client.close()
        raise EznasError(f"the dask scheduler at {address!r} has no worker after {CONNECT_SECONDS} s; "
                         f"start some with 'dask worker {address}'") from None
    _CLIENTS[key] = client
    return client


def close_clusters() -> None:
    """Close this process's dask clients and the local clusters started for them (also at exit)."""
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


atexit.register(close_clusters)


def _require(backend: str, n_jobs: int) -> None:
    """Fail early, with the fix, on an unknown backend, a bad worker count or a missing package."""
    if backend not in BACKENDS:
        raise EznasError(f"unknown backend {backend!r}: use loky, threading, sequential, dask or ray")
    if n_jobs < 1:
        raise EznasError(f"the number of parallel workers (--jobs / run.n_jobs) must be 1 or more, not {n_jobs}")
    try:
        if backend == "dask":
            import dask.distributed  # noqa: F401
        elif backend == "ray":
            import ray  # noqa: F401
    except ImportError:
        raise EznasError(f"backend {backend!r} needs {'dask.distributed' if backend == 'dask' else 'ray'}: "
                         f"pip install 'eznas[{backend}]'") from None


def check_backend(backend: str, n_jobs: int = 1, address: str = "") -> None:
    """Check that ``backend`` can run jobs, so that a run can fail before it writes anything.

    Checks the backend name, the worker count and the optional package; for dask and ray with
    an ``address``, connects to the cluster (the connection is kept for `run_tasks`).

    Parameters
    ----------
    backend, n_jobs, address
        As for `run_tasks`.

    Raises
    ------
    EznasError
        What is wrong, and how to fix it.
    """
    _require(backend, n_jobs)
    if address and backend == "dask":
        _dask_client(n_jobs, address)
    elif address and backend == "ray":
        _ray_session(n_jobs, address)


def _in_process(backend: str, n_jobs: int) -> bool:
    """Whether jobs run in the calling process: sequential, or one local worker (as in joblib)."""
    return backend == "sequential" or (backend in ("loky", "threading") and n_jobs == 1)


def _open(backend: str, n_jobs: int, address: str) -> _Pool:
    if _in_process(backend, n_jobs):
        return _InProcessPool()
    if backend == "threading":
        return _ThreadPool(n_jobs)
    if backend == "loky":
        return _LokyPool(n_jobs)
    if backend == "dask":
        return _DaskPool(n_jobs, address)
    return _RayPool(n_jobs, address)


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

    def __init__(self, pool: _Pool, jobs: Sequence[Job], retries: int, timeout: float | None,
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
        future = self.pool.submit(_call, func, args, slot, self.pool.share)
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
        except Exception as exc:  # the job's own errors come back as _Raised: this is its worker
            if self.pool.breaks_together and self.pool.is_break(exc) and not attempt.alone:
                log.warning("%s: %s while it ran beside other jobs; rerunning it alone",
                            self._name(attempt.index), self.pool.lost(exc))
                self.suspects.append(attempt.index)
                self.suspects.sort()
            else:
                self._failed(attempt, self.pool.lost(exc))
            return
        if isinstance(value, _Raised):
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

def run_tasks(jobs: Sequence[Job], n_jobs: int = 1, backend: str = "loky", address: str = "", *,
              retries: int = 2, timeout: float | None = None,
              labels: Sequence[str] | None = None) -> Iterator[Any]:
    """Run ``jobs`` on ``backend`` and yield their results in submission order, lazily.

    Parameters
    ----------
    jobs : sequence of (function, args)
        Independent jobs; each result is ``function(*args)``. With a process or cluster
        backend, functions, arguments and results must pickle (module-level functions do).
    n_jobs : int
        Workers: threads or processes (1: the calling process), or the local dask cluster's
        workers or ray's CPUs when no ``address`` is given. With a cluster it is the number of
        workers that share one machine's cores (torch threads per job = cores // n_jobs).
    backend : str
        ``"loky"``, ``"threading"``, ``"sequential"``, ``"dask"`` or ``"ray"``.
    address : str
        dask scheduler (``"tcp://host:8786"``) or ray cluster address; ``""`` starts a local one.
    retries : int
        Further attempts for a job that raises, kills its worker or times out.
    timeout : float, optional
        Seconds a job may run, counted from its start in a worker slot (so a new worker's
        start-up counts); None for no limit. Not enforced for jobs run in the calling process
        (the sequential backend, or loky and threading with ``n_jobs = 1``).
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
        or an out-of-range ``n_jobs``, ``retries`` or ``timeout``.
    """
    _require(backend, n_jobs)
    if retries < 0:
        raise EznasError(f"retries must be 0 or more, not {retries}")
    if timeout is not None and not timeout > 0:
        raise EznasError(f"a job timeout must be positive seconds (or none), not {timeout}")
    if labels is not None and len(labels) != len(jobs):
        raise ValueError(f"{len(labels)} labels for {len(jobs)} jobs")
    if timeout is not None and _in_process(backend, n_jobs):
        warnings.warn(f"backend {backend!r} with {n_jobs} worker(s) runs jobs in the calling process and cannot "
                      "enforce a job timeout; use loky with 2 or more workers", RuntimeWarning, stacklevel=2)
    return _results(list(jobs), n_jobs, backend, address, retries, timeout, labels)


def _results(jobs: list[Job], n_jobs: int, backend: str, address: str, retries: int, timeout: float | None,
             labels: Sequence[str] | None) -> Iterator[Any]:
    if jobs:  # the pool (a local cluster, maybe) opens at the first result asked for
        yield from _Scheduler(_open(backend, n_jobs, address), jobs, retries, timeout, labels)
