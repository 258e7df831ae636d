"""What runs inside a worker: one job, in its worker slot, with its device and torch thread share.

Every parallel step of eznas is a list of independent ``(function, args)`` jobs (`Job`);
`eznas.parallel.run_tasks` runs each through `call` wherever it lands (the calling process, a
thread, a loky process, a dask or ray worker). Each running job holds a worker slot 0 .. n-1
that no other running job holds; `current_device` inside a job gives ``cuda:<slot mod device
count>`` on a machine with CUDA devices and ``cpu`` without. The caller fixes the device kind
of a step (`device_kind`: ``cuda`` when its own machine has CUDA, else ``cpu``; it enters the
cache keys of non-CPU results), and each job asks `job_device` for its device of that kind,
on the worker, not in the caller. Jobs in worker threads and
processes run with ``max(1, cores // n_jobs)`` torch threads (`worker_threads`) when torch is
loaded. A job that raises returns a `Raised` (its error in one line) instead.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Job = tuple[Callable[..., Any], tuple[Any, ...]]
PARENT_POLL_SECONDS = 1.0  # a worker process checks this often whether eznas is still alive
_SLOT: contextvars.ContextVar[int] = contextvars.ContextVar("eznas_worker_slot", default=0)
_WATCHING = False  # whether this process runs `exit_with_parent`'s thread


@dataclass(frozen=True)
class Raised:
    """What a worker returns for a job that raised: the error in one line (always picklable)."""

    error: str


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


def device_kind() -> str:
    """The device kind of the jobs this process starts: ``"cuda"`` when it sees a CUDA device, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.device_count() else "cpu"


def job_device(kind: str) -> str:
    """The running job's device of kind ``kind``: ``"cpu"``, or `current_device` for ``"cuda"``.

    Raises
    ------
    RuntimeError
        ``kind`` is ``"cuda"`` and this worker has no CUDA device (statistics filed as GPU
        statistics are never computed on a CPU).
    """
    if kind == "cpu":
        return "cpu"
    device = current_device()
    if not device.startswith(kind):
        raise RuntimeError(f"this worker has no {kind} device, and the caller computes on {kind}: give every worker "
                           f"one, or run eznas on a machine without one")
    return device


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


def call(func: Callable[..., Any], args: tuple[Any, ...], slot: int, share: int, child: bool = False) -> Any:
    """Run one job where it landed: set its slot and thread count; an exception becomes `Raised`.

    ``share`` is the number of workers sharing this machine's cores (0: leave torch threads as
    they are). Torch threads are set only when the job's code has loaded torch. ``child``: the
    job runs in a worker process that eznas started (loky), which then ends itself as soon as
    eznas dies (`exit_with_parent`), rather than run on, orphaned, holding its memory.
    """
    if child:
        exit_with_parent()
    torch = sys.modules.get("torch")
    if share and torch is not None:
        threads = worker_threads(share)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    token = _SLOT.set(slot)
    try:
        return func(*args)
    except Exception as exc:
        return Raised(_describe(exc))
    finally:
        _SLOT.reset(token)


def exit_with_parent() -> None:
    """Start (once per process) a daemon thread that ends this process when its parent process dies."""
    global _WATCHING
    if _WATCHING:
        return
    _WATCHING = True
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # orphaned: the parent died without stopping us (kill -9)

    threading.Thread(target=watch, name="eznas-parent-watch", daemon=True).start()


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _describe(exc: Exception) -> str:
    """An exception in one line, with the place it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return one_line(exc) + where
