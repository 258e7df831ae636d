"""`NetworkStats` on disk: one content-addressed ``.safetensors`` file per network and batch.

The key is the sha256 of a canonical JSON of everything that changes the numbers (task,
architecture, network seed, batch settings, probe settings, `PROBE_VERSION`), so a changed
setting never reads stale stats. A file holds the layer tensors as ``layers.<name>`` and, in
the safetensors string metadata under ``"eznas"``, a JSON object with the net scalars, the
caller's ``meta`` and the probe version. The statistics a file holds are its layer tensors and
net scalars (`StatsCache.holds` reads them from the header alone): a probe asked for some
statistics only (``needs``) stores only those. Files are written atomically (`eznas.files.write_atomic`),
so readers never see half a file. Nothing is pickled: a downloaded cache is safe to open. A corrupt file is reported with a warning and
treated as missing, so the caller recomputes (and overwrites) it; so is a file whose tensors no
longer match the sha256 stored with them, or that holds a non-finite value (the probe gives none).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import warnings
from hashlib import sha256
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from eznas.errors import EznasError
from eznas.files import remove_stale, write_atomic
from eznas.probe import PROBE_VERSION, NetworkStats

ENV_VAR = "EZNAS_CACHE_DIR"
DEFAULT_DIR = ".eznas_cache"
SUFFIX = ".safetensors"
_PREFIX = "layers."
_KEY = re.compile(r"[0-9a-f]{64}")
_MAX_HEADER = 100_000_000  # bytes: safetensors refuses longer headers
FORMAT = 2  # 2: with a sha256 of the tensors; format-1 files (no checksum) are still read


class CacheWarning(UserWarning):
    """A cache file could not be read and will be recomputed."""


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON types (dataclasses as dicts, tuples as lists, paths as str)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"stats_key: cannot encode {type(value).__name__} value {value!r} as JSON")


def canonical_json(parts: dict[str, Any]) -> str:
    """Sorted-key, whitespace-free JSON of ``parts`` plus the probe version."""
    doc = _canonical({**parts, "probe_version": PROBE_VERSION})
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def stats_key(**parts: Any) -> str:
    """The cache key of a probe: sha256 hex of `canonical_json` of ``parts``.

    Pass everything that changes the numbers, e.g. ``stats_key(task="nb201:cifar10",
    arch=arch, seed=0, batch={"images": "cifar10", "n": 64, "seed": 0}, settings=settings)``;
    ``arch`` may be a string or a dict, ``settings`` a `ProbeSettings` (any dataclass works).
    """
    return sha256(canonical_json(parts).encode()).hexdigest()


class StatsCache:
    """A directory of stats files, ``<root>/<key[:2]>/<key>.safetensors``.

    Parameters
    ----------
    root : the directory; default ``$EZNAS_CACHE_DIR`` or ``./.eznas_cache``. Created on
        the first save.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        if root is None:
            root = os.environ.get(ENV_VAR) or DEFAULT_DIR
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the stats of ``key`` live (``key`` must be a `stats_key`)."""
        if not _KEY.fullmatch(key):
            raise ValueError(f"StatsCache: key {key!r} is not a sha256 hex digest from stats_key")
        return self.root / key[:2] / (key + SUFFIX)

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str, shapes: dict[str, tuple[int, ...]] | None = None) -> NetworkStats | None:
        """The stats of ``key``; None when absent, or damaged (with a `CacheWarning`): unreadable, a
        checksum that does not match, a non-finite value, no ``depth``, or a layer tensor whose shape
        after the layer axis differs from ``shapes[name]`` (stat name -> shape, when given)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _decode(data, shapes or {})
        except Exception as err:  # any failure to parse means: recompute
            _unreadable(path, err)
            return None

    def holds(self, key: str) -> frozenset[str] | None:
        """The statistics stored under ``key`` (layer tensor and net scalar names), read from the
        file's header only; None when there is no file, or (with a `CacheWarning`) when its header
        is unreadable, so that the caller recomputes it."""
        path = self.path(key)
        try:
            with path.open("rb") as f:
                head = f.read(8)
                head += f.read(min(int.from_bytes(head, "little"), _MAX_HEADER))
        except (FileNotFoundError, NotADirectoryError):  # no entry (or no cache directory: see check_writable)
            return None
        try:
            tensors, doc = _header(head)
            return frozenset(n[len(_PREFIX):] for n in tensors if n.startswith(_PREFIX)) | frozenset(doc["net"])
        except Exception as err:  # any failure to parse means: recompute
            _unreadable(path, err)
            return None

    def check_writable(self) -> None:
        """An `EznasError` naming the cache directory when statistics cannot be written there."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as e:
            raise EznasError(f"cannot write to the statistics cache {self.root}: {e.strerror}; "
                             "pass a writable --cache-dir (or set EZNAS_CACHE_DIR)") from None

    def save(self, key: str, stats: NetworkStats, meta: dict[str, Any] | None = None) -> Path:
        """Write ``stats`` (and the JSON-able ``meta``) atomically; return the file path."""
        path = self.path(key)
        tensors = {_PREFIX + name: t.detach().to("cpu").contiguous()
                   for name, t in stats.layers.items()}
        header = {"format": FORMAT, "probe_version": PROBE_VERSION, "net": stats.net,
                  "meta": _canonical(meta or {}), "sha256": _checksum(tensors)}
        blob = st_save(tensors, metadata={"eznas": json.dumps(header, allow_nan=True)})
        remove_stale(path.parent, f".{path.name}.*.tmp")  # left by a writer of this file that was killed
        return write_atomic(path, blob, fix=f"check the cache directory {self.root} (or pass another --cache-dir)")


def _unreadable(path: Path, err: Exception) -> None:
    """Warn that the stats file ``path`` cannot be read and will be recomputed."""
    warnings.warn(f"stats cache file {path} is unreadable ({type(err).__name__}: {err}); "
                  f"ignoring it, the stats will be recomputed", CacheWarning, stacklevel=3)


def _header(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The safetensors header (tensor name -> dtype, shape, offsets) and the eznas JSON object of a
    stats file's bytes, or of its first bytes up to the end of the header (ValueError if there is none)."""
    if len(data) < 8:
        raise ValueError(f"file is {len(data)} bytes, too short for safetensors")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError("truncated safetensors header")
    header = json.loads(data[8:8 + size])
    doc = json.loads(header["__metadata__"]["eznas"])
    if doc.get("probe_version") != PROBE_VERSION:
        raise ValueError(f"probe version {doc.get('probe_version')!r}, expected {PROBE_VERSION}")
    return {k: v for k, v in header.items() if k != "__metadata__"}, doc


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _decode(data: bytes, shapes: dict[str, tuple[int, ...]]) -> NetworkStats:
    """Bytes of a stats file -> `NetworkStats`; raises on any inconsistency."""
    doc = _header(data)[1]
    tensors = st_load(data)
    if doc.get("format") == FORMAT and doc.get("sha256") != _checksum(tensors):
        raise ValueError("its content does not match its checksum")
    layers = {name[len(_PREFIX):]: t for name, t in tensors.items() if name.startswith(_PREFIX)}
    if "depth" not in layers or len({t.shape[0] for t in layers.values()}) != 1:
        raise ValueError("layer tensors missing or of unequal layer counts")
    for name, t in layers.items():
        if name in shapes and tuple(t.shape[1:]) != shapes[name]:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected [L, {', '.join(map(str, shapes[name]))}]")
        if t.dtype != torch.float32 or not torch.isfinite(t).all():
            raise ValueError(f"{name} is not finite float32")
    net = doc["net"]
    if not isinstance(net, dict) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in net.values()):
        raise ValueError("net scalars are not a dict of finite numbers")
    return NetworkStats(layers=layers, net={k: float(v) for k, v in net.items()})
