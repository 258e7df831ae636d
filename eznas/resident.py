"""Values that every job of a parallel step needs, kept in each worker process between jobs.

A fitness job needs the run's whole statistics pool (hundreds of MB) and gains from the subtree
values memoised by earlier jobs on the same pool. Rather than travel with every job, the pool
goes to each worker process once and stays there: a job gets a `Resident` handle, which holds
the value's key (a digest of its content) and, in the calling process, the value itself.

- In the calling process (the sequential backend, threads, one worker) the handle is passed by
  reference: nothing is copied, and the object built from the value (an `Evaluator` and its
  memo) is kept in this process for later jobs.
- Pickled to a worker process (loky, dask, ray), a handle carries its key only, unless made to
  `carry` the value. A worker keeps what it builds from a carried value under the key
  (`KEEP` values at most, the least recently used dropped first), so a later job with the same
  key finds it there. A job in a worker that holds nothing for its key returns `Missing`, and
  `run_with` runs it again carrying the value: the first job on each worker, a worker that
  replaced a dead one, a dask or ray worker on another machine.

Because the key is a content digest, a changed value is a new key: a worker never uses a stale one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from eznas.parallel import Parallel, run_tasks

T = TypeVar("T")
KEEP = 1  # values a process keeps (with what it built from them): a run has one pool

_KEPT: OrderedDict[tuple[str, Callable[..., Any]], Any] = OrderedDict()
_LOCK = threading.Lock()


class Resident(Generic[T]):
    """A handle on a value shared by many jobs: its key, and the value where it is at hand.

    Parameters
    ----------
    key : str
        A digest of the value's content (e.g. `eznas.statsbatch.StatsBatch.digest`).
    value : object, optional
        The value; None in a worker process that received the key only.
    carry : bool
        Whether pickling the handle includes the value (default: the key only).
    """

    def __init__(self, key: str, value: T | None, carry: bool = False) -> None:
        self.key, self.value, self.carry = key, value, carry

    def carrying(self) -> Resident[T]:
        """The same handle, pickled with its value."""
        return Resident(self.key, self.value, carry=True)

    def __reduce__(self) -> tuple[type, tuple[str, T | None, bool]]:
        return Resident, (self.key, self.value if self.carry else None, self.carry)  # a copy carries as the original


@dataclass(frozen=True)
class Missing:
    """What a job returns in a worker process that holds nothing for its handle's key."""

    key: str


def resolve(handle: Resident[T], build: Callable[[T], Any]) -> Any | None:
    """``build(value)`` for the handle's value, kept in this process for later jobs.

    Returns what an earlier job of this process built for the same key, or builds it now from
    the value the handle holds; None when the process has neither (see `Missing`).
    """
    slot = (handle.key, build)
    with _LOCK:
        kept = _KEPT.get(slot)
        if kept is None:
            if handle.value is None:
                return None
            kept = _KEPT[slot] = build(handle.value)
            while len(_KEPT) > KEEP:
                _KEPT.popitem(last=False)
        _KEPT.move_to_end(slot)
        return kept


def _call_with(func: Callable[..., Any], handle: Resident[T], build: Callable[[T], Any], *args: Any) -> Any:
    """A job: ``func(built, *args)`` with ``built`` the resolved handle, or `Missing`."""
    built = resolve(handle, build)
    return Missing(handle.key) if built is None else func(built, *args)


def run_with(func: Callable[..., Any], handle: Resident[T], build: Callable[[T], Any], args: Sequence[tuple[Any, ...]],
             labels: Sequence[str], parallel: Parallel = Parallel()) -> list[Any]:
    """Run ``func(build(handle value), *a)`` for each ``a`` in ``args`` and return the results in order.

    The jobs go through `eznas.parallel.run_tasks` (``parallel``: its backend, worker and fault
    settings; ``labels``: one per job), first with the key only; those that land in a process
    without the value run once more, carrying it. ``build`` runs inside a job, so it may take the
    job's device (`eznas.jobs.current_device`). A job that fails is `eznas.parallel.Failed`.
    """
    results = list(run_tasks([(_call_with, (func, handle, build, *a)) for a in args], parallel, labels=labels))
    cold = [i for i, r in enumerate(results) if isinstance(r, Missing)]
    if cold:
        carried = handle.carrying()
        again = run_tasks([(_call_with, (func, carried, build, *args[i])) for i in cold],
                          parallel, labels=[labels[i] for i in cold])
        for i, result in zip(cold, again):
            results[i] = result
    return results
