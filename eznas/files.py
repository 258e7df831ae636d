"""Files in and out: the one atomic writer of eznas, and JSON read back with limits and a schema.

Every file eznas writes (statistics, score caches, checkpoints, logs, tables, exported proxies)
goes through `write_atomic`: the bytes go to a uniquely named temporary file in the target's
directory, then ``os.replace`` moves it into place. A crash leaves the old file or the new one,
never a mix; two processes writing the same file leave one whole version. A temporary file left
by a killed writer is named ``.NAME.*.tmp``; `remove_stale` clears old ones.

Every JSON file eznas reads (checkpoints, records, caches) may come from elsewhere, so
`read_json` bounds its size and nesting and `mismatch` checks it against a schema before use.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from eznas.errors import EznasError

MAX_JSON_BYTES = 512 << 20  # a JSON file eznas reads may be at most this large
STALE_SECONDS = 3600  # a writer's temporary file this old is left over from a killed process


def write_atomic(path: str | os.PathLike, data: str | bytes, *, durable: bool = False,
                 fix: str = "check that the directory is writable and has free space") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its directory; returns the path.

    ``durable`` also flushes the file to disk before the rename (checkpoints). An unwritable
    place is an `EznasError` naming the path, the reason and ``fix``.
    """
    return write_together([(Path(path), data)], durable=durable, fix=fix)[0]


def write_together(files: list[tuple[Path, str | bytes]], *, durable: bool = False,
                   fix: str = "check that the directory is writable and has free space") -> list[Path]:
    """Write several files as `write_atomic` does, each whole before any is moved into place, so that
    a failure while writing leaves none of them changed (only the renames, microseconds apart, remain
    to be done after the last byte is written)."""
    staged: list[tuple[str, Path]] = []
    current = files[0][0]
    try:
        for current, data in files:
            staged.append((_stage(current, data, durable, fix), current))
        for tmp, current in staged:
            os.replace(tmp, current)
    except BaseException as e:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise EznasError(f"cannot write {current}: {e.strerror}; {fix}") from None
        raise
    return [path for path, _ in files]


def _stage(path: Path, data: str | bytes, durable: bool, fix: str) -> str:
    """The temporary file beside ``path`` holding ``data`` (`EznasError` when it cannot be made)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise EznasError(f"cannot write {path}: {e.strerror}; {fix}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def remove_stale(directory: Path, pattern: str = ".*.tmp") -> None:
    """Delete temporary files of `write_atomic` in ``directory`` older than `STALE_SECONDS` (killed writers)."""
    cutoff = time.time() - STALE_SECONDS
    for path in directory.glob(pattern):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # gone already, or not ours to delete: leave it
            pass


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON document in ``path``; an `EznasError` naming the file, the problem and ``fix`` when it is
    missing, unreadable, over `MAX_JSON_BYTES`, not JSON, or nested too deeply to parse."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise EznasError(f"{path}: {size:,} bytes, over the {MAX_JSON_BYTES:,} eznas reads; {fix}")
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise EznasError(f"{path} not found; {fix}") from None
    except OSError as e:
        raise EznasError(f"{path}: cannot read it ({e.strerror}); {fix}") from None
    except (ValueError, UnicodeDecodeError):
        raise EznasError(f"{path} is not valid JSON (truncated or corrupt); {fix}") from None
    except RecursionError:
        raise EznasError(f"{path} is nested too deeply to be an eznas file; {fix}") from None


Spec = Any  # a type (float takes ints too), None, a tuple of alternatives, [spec], {str: spec} or {"key": spec}


def mismatch(value: Any, spec: Spec, where: str = "the file") -> str | None:
    """Where ``value`` departs from ``spec``, in words (None if it conforms).

    ``spec`` is a Python type (``float`` accepts integers; ``bool`` is no number), ``None``, a
    tuple of alternatives, ``[item]`` for a list, ``{str: item}`` for an object with any keys, or
    ``{"key": item, ...}`` for an object with at least those keys.
    """
    if isinstance(spec, tuple):
        if any(mismatch(value, s, where) is None for s in spec):
            return None
        return f"{where} is {_kind(value)}, expected one of {', '.join(_name(s) for s in spec)}"
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{where} is {_kind(value)}, expected a list"
        return next((m for i, v in enumerate(value) if (m := mismatch(v, spec[0], f"{where}[{i}]"))), None)
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{where} is {_kind(value)}, expected an object"
        if str in spec:
            return next((m for k, v in value.items() if (m := mismatch(v, spec[str], f"{where}[{k!r}]"))), None)
        for key, item in spec.items():
            if key not in value:
                return f"{where} has no {key!r}"
            if (m := mismatch(value[key], item, f"{where}.{key}")) is not None:
                return m
        return None
    ok = (value is None if spec is None else
          isinstance(value, (int, float)) and not isinstance(value, bool) if spec is float else
          isinstance(value, int) and not isinstance(value, bool) if spec is int else isinstance(value, spec))
    return None if ok else f"{where} is {_kind(value)}, expected {_name(spec)}"


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _name(spec: Spec) -> str:
    if spec is None:
        return "null"
    if isinstance(spec, list):
        return "a list"
    if isinstance(spec, dict):
        return "an object"
    return {float: "a number", int: "an integer", str: "a string", bool: "true/false"}.get(spec, spec.__name__)
