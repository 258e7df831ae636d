"""The score cache: per-network results of one proxy on one task and batch, one JSON file each.

Files live under ``<cache root>/scores/`` (or ``--scores-dir``), named by the sha256 of their
header: the proxy's identity (baseline name and version, the sha256 of a proxy file, or the
expression with its probe settings and the probe version), the task, the net seed and the
batch, and the device kind when it is not the CPU (GPU scores round differently: they never mix
with CPU ones, and CPU files keep their names). They are written atomically every few seconds and at the end, so repeated and compared
evaluations only score what is new and a killed run resumes. A score directory copied to
another machine serves there as it is (no statistics are needed for the networks it holds).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

from eznas.errors import EznasError
from eznas.files import mismatch, read_json, write_atomic
from eznas.proxy_spec import ProxySpec

SCORES_DIR = "scores"  # score-cache subdirectory of the cache root
SCORES_VERSION = 1  # bump when the protocol changes the per-network scores
FLUSH_SECONDS = 2.0  # the score cache is written at least this often while scoring
ENTRY = {"value": (float, {str: float}, None), "seconds": (float, None), "error": (str, None)}  # one network's result


class ScoreCache:
    """Per-network results of one proxy on one task and batch: one JSON file, written atomically.

    Entries map the benchmark index to ``{"value": float | dict | None, "seconds": float | None,
    "error": str | None}``; ``value`` None means the proxy failed on that network.
    """

    def __init__(self, directory: Path, spec: ProxySpec, task: str, net_seed: int, seed: int, batch_size: int,
                 device: str = "cpu") -> None:
        header = {"proxy": spec.identity, "task": task, "net_seed": net_seed,
                  "batch": {"n": batch_size, "seed": seed, "kind": "real"}, "version": SCORES_VERSION,
                  **({} if device == "cpu" else {"device": device})}
        key = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        self.path = directory / f"{key}.json"
        self.header = {**header, "label": spec.label}
        self.entries: dict[str, dict[str, Any]] = self._read()
        self._dirty = False
        self._written = time.monotonic()

    def _read(self) -> dict[str, dict[str, Any]]:
        """The file's entries; a damaged file or entry is dropped with a warning (its scores are recomputed)."""
        if not self.path.exists():
            return {}
        try:
            doc = read_json(self.path, "its scores are recomputed")
            problem = mismatch(doc, {"entries": dict}, "the score file")
        except EznasError as e:
            problem = str(e)
        if problem is not None:
            warnings.warn(f"score cache {self.path} is unreadable ({problem}); recomputing its scores", stacklevel=3)
            return {}
        entries, bad = {}, []
        for index, entry in doc["entries"].items():
            if index.isdigit() and mismatch(entry, ENTRY) is None:
                entries[index] = entry
            else:
                bad.append(index)
        if bad:
            warnings.warn(f"score cache {self.path}: {len(bad)} damaged entries (e.g. {bad[0]!r}); recomputing them",
                          stacklevel=3)
        return entries

    def get(self, index: int) -> dict[str, Any] | None:
        """The cached entry of a network, or None."""
        return self.entries.get(str(index))

    def put(self, index: int, entry: dict[str, Any]) -> None:
        """Record an entry; the file is rewritten if the last write is older than `FLUSH_SECONDS`."""
        self.entries[str(index)] = entry
        self._dirty = True
        if time.monotonic() - self._written > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the file now if anything changed (atomically)."""
        if not self._dirty:
            return
        write_atomic(self.path, json.dumps({**self.header, "entries": self.entries}, separators=(",", ":")),
                     fix="choose another --scores-dir")
        self._dirty = False
        self._written = time.monotonic()
