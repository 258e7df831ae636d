"""The five backends that run jobs: the calling process, threads, loky processes, dask and ray.

============  ==================================================================================
sequential    in the calling process, one job at a time
threading     ``n_jobs`` threads in the calling process (``n_jobs = 1``: as sequential)
loky          ``n_jobs`` worker processes (joblib's loky executor, kept between calls;
              ``n_jobs = 1``: as sequential, joblib's convention)
dask          a ``dask.distributed`` cluster: the scheduler at ``address``, or a local cluster
              of ``n_jobs`` single-threaded worker processes on 127.0.0.1 (kept for the process)
ray           the ray cluster at ``address``, or a local one with ``n_jobs`` CPUs
============  ==================================================================================

Each is a `Pool` as `eznas.parallel`'s scheduler sees it (submit a call, stop late calls,
clean up); `open_pool` makes one and `check_backend` fails early, with the fix, on a backend
that cannot run.
"""

from __future__ import annotations

import abc
import atexit
import concurrent.futures as cf
import functools
import os
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any

from joblib.externals.loky import get_reusable_executor
from joblib.externals.loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from eznas.errors import EznasError
from eznas.jobs import one_line

BACKENDS = ("loky", "threading", "sequential", "dask", "ray")
LOKY_IDLE_SECONDS = 300  # loky workers idle this long exit; kept alive between generations
CONNECT_SECONDS = 30  # waiting for a dask scheduler to answer and to have a worker
MAX_JOBS = 256  # workers one eznas process may ask for

_CLIENTS: dict[tuple[str, int], Any] = {}  # (address, local workers) -> dask Client, kept for the process


class Pool(abc.ABC):
    """A backend as the scheduler sees it: submit a call, stop late calls, clean up.

    Attributes
    ----------
    slots : int
        Jobs run at once.
    share : int
        Workers sharing a machine's cores, for the torch thread count (0: leave it).
    breaks_together : bool
        Whether one dead worker fails every job in flight (loky).
    children : bool
        Whether jobs run in worker processes this process started, which must end when it dies.
    """

    slots = 1
    share = 0
    breaks_together = False
    children = False

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
        return f"worker lost: {one_line(exc, limit=160)}"

    def close(self, futures: list[cf.Future]) -> None:
        """End of a `run_tasks` call; ``futures`` still running (after an interruption) are dropped."""


class _InProcessPool(Pool):
    """sequential, or one worker: each job runs in the caller at submission (no timeout, no crash
    isolation)."""

    def submit(self, func: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        future.set_result(func(*args))
        return future


class _ThreadPool(Pool):
    """threading: ``n_jobs`` threads of the caller; a timed-out job is abandoned, not stopped."""

    def __init__(self, workers: int, share: int) -> None:
        self.slots, self.share = workers, share
        torch = sys.modules.get("torch")
        self._torch_threads = torch.get_num_threads() if torch is not None else 0
        self._executor = cf.ThreadPoolExecutor(workers, thread_name_prefix="eznas-job")

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


class _LokyPool(Pool):
    """loky: joblib's reusable process executor, replaced when a worker dies or on a timeout."""

    breaks_together = True
    children = True

    def __init__(self, workers: int, share: int) -> None:
        self.slots, self.share = workers, share
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
        return "worker process died" + (f" (exit codes {codes.group(1)})" if codes else f": {one_line(exc)}")

    def close(self, futures: list[cf.Future]) -> None:
        if futures:  # interrupted: stop the work instead of finishing it
            self._executor.shutdown(wait=False, kill_workers=True)


class _DaskPool(Pool):
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


class _RayPool(Pool):
    """ray: remote calls without ray's own retries (the scheduler retries)."""

    def __init__(self, n_jobs: int, address: str) -> None:
        self._ray = ray = _ray_session(n_jobs, address)
        self._remote = ray.remote(max_retries=0)(_apply)
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


def _apply(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``: what a ray worker runs (ray wraps one remote function; ``func`` is `eznas.jobs.call`)."""
    return func(*args)


def _ray_session(n_jobs: int, address: str) -> Any:
    """The ray module, connected to the cluster at ``address`` (or to a local ray of ``n_jobs`` CPUs)."""
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address=address or None, num_cpus=None if address else n_jobs)
        except ConnectionError as exc:
            raise EznasError(f"cannot reach the ray cluster at {address!r} ({one_line(exc)}); "
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
            raise EznasError(f"cannot reach the dask scheduler at {address!r} ({one_line(exc)}); start one "
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


def require(backend: str, n_jobs: int) -> None:
    """Fail early, with the fix, on an unknown backend, a bad worker count or a missing package."""
    if backend not in BACKENDS:
        raise EznasError(f"unknown backend {backend!r}: use loky, threading, sequential, dask or ray")
    if not 1 <= n_jobs <= MAX_JOBS:
        raise EznasError(f"the number of parallel workers (--jobs / run.n_jobs) must be 1 to {MAX_JOBS}, not {n_jobs}")
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
    require(backend, n_jobs)
    cores = os.cpu_count() or 1
    if backend in ("loky", "threading") and n_jobs > cores:
        warnings.warn(f"{n_jobs} workers on a machine with {cores} cores: they will share them (slower, more memory)",
                      RuntimeWarning, stacklevel=2)
    if address and backend == "dask":
        _dask_client(n_jobs, address)
    elif address and backend == "ray":
        _ray_session(n_jobs, address)


def in_process(backend: str, n_jobs: int) -> bool:
    """Whether jobs run in the calling process: sequential, or one local worker (as in joblib)."""
    return backend == "sequential" or (backend in ("loky", "threading") and n_jobs == 1)


def open_pool(backend: str, n_jobs: int, address: str, jobs: int) -> Pool:
    """A pool of ``backend`` for ``jobs`` jobs (see `in_process` for when they run in the calling process).

    Threads and loky processes: at most ``max(2, jobs)`` workers start, however large ``n_jobs`` is
    (three networks need no more than three processes); each runs with the torch thread share of
    ``n_jobs`` workers, so results do not depend on the cap.
    """
    if in_process(backend, n_jobs):
        return _InProcessPool()
    workers = min(n_jobs, max(2, jobs))
    if backend == "threading":
        return _ThreadPool(workers, n_jobs)
    if backend == "loky":
        return _LokyPool(workers, n_jobs)
    if backend == "dask":
        return _DaskPool(n_jobs, address)
    return _RayPool(n_jobs, address)
