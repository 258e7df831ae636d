"""Parallel execution through joblib: local process/thread pools, or a dask / ray cluster.

Every parallel step of eznas is a list of independent ``(function, args)`` jobs whose results
come back in submission order, so results never depend on the number of workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from joblib import Parallel, delayed, parallel_config

from eznas.errors import EznasError

Job = tuple[Callable[..., Any], tuple[Any, ...]]


def run_tasks(jobs: Sequence[Job], n_jobs: int = 1, backend: str = "loky", address: str = "") -> Iterator[Any]:
    """Run ``jobs`` and yield their results in order (lazily, so callers can show progress)."""
    if n_jobs == 1 or backend == "sequential" or len(jobs) <= 1:
        for func, args in jobs:
            yield func(*args)
        return
    with _backend(backend, address, n_jobs):
        parallel = Parallel(n_jobs=n_jobs if backend in ("loky", "threading") else -1, return_as="generator")
        yield from parallel(delayed(func)(*args) for func, args in jobs)


@contextlib.contextmanager
def _backend(backend: str, address: str, n_jobs: int) -> Iterator[None]:
    if backend in ("loky", "threading"):
        with parallel_config(backend=backend):
            yield
        return
    if backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise EznasError("backend 'dask' needs dask.distributed: pip install 'eznas[dask]'") from None
        if address:
            client = Client(address)
            cluster = None
        else:
            cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        try:
            with parallel_config(backend="dask"):
                yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    if backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise EznasError("backend 'ray' needs ray: pip install 'eznas[ray]'") from None
        register_ray()
        ray.init(address=address or None, ignore_reinit_error=True)
        with parallel_config(backend="ray"):
            yield
        return
    raise EznasError(f"unknown backend {backend!r}: use loky, threading, sequential, dask or ray")
