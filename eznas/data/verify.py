"""Verify data files and archives against `sources`: recorded checksums first, structure otherwise.

Every check returns a short description of what it verified. A file that fails raises
`EznasError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from eznas.data.sources import Archive, DataFile
from eznas.errors import EznasError

_CHUNK = 1 << 20
_ENTRY_KEYS = ("net", "test_ep_top1", "params", "flops")


def digest(path: Path, algorithm: str, prefix: bytes = b"") -> str:
    """Hex digest of ``prefix`` followed by the bytes of ``path``.

    Parameters
    ----------
    path : file to hash.
    algorithm : a `hashlib` name (``"sha256"``, ``"md5"``, ``"sha1"``).
    prefix : bytes hashed before the file (a git object header for blob ids).
    """
    h = hashlib.new(algorithm, usedforsecurity=False)
    h.update(prefix)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def git_blob_id(path: Path) -> str:
    """The git blob id of a file (what ``git hash-object`` prints)."""
    return digest(path, "sha1", b"blob %d\0" % path.stat().st_size)


def verify_file(entry: DataFile, path: Path) -> str:
    """Check ``path`` against the catalogue entry ``entry``.

    Returns
    -------
    str
        What was verified, e.g. ``"sha256 cb5d777ec336... matches"``.

    Raises
    ------
    EznasError
        If the file cannot be read, or its size, checksum or structure is wrong.
    """
    try:
        _check_size(path, entry.size)
        if entry.sha256 is not None:
            got = digest(path, "sha256")
            if got != entry.sha256:
                raise EznasError(f"{path}: sha256 {got[:16]}... differs from the recorded {entry.sha256[:16]}... "
                                 f"(corrupt or another version)")
            return f"sha256 {got[:12]}... matches"
        if entry.git_blob is not None:
            got = git_blob_id(path)
            if got != entry.git_blob:
                raise EznasError(f"{path}: git blob id {got[:12]}... differs from the recorded "
                                 f"{entry.git_blob[:12]}... (corrupt or another version)")
            return f"size + git blob {got[:8]} match (no sha256 recorded)"
        return _STRUCTURE[entry.kind](entry, path) + " (no checksum recorded)"
    except OSError as e:
        raise EznasError(f"{path}: cannot read ({e.strerror or e})") from None


def verify_archive(archive: Archive, path: Path) -> str:
    """Check a downloaded archive: recorded size and md5 where known, else that it opens.

    Raises
    ------
    EznasError
        If the archive's size or md5 is wrong or a zip archive is unreadable.
    """
    try:
        _check_size(path, archive.size)
        if archive.md5 is not None:
            got = digest(path, "md5")
            if got != archive.md5:
                raise EznasError(f"{path}: md5 {got} differs from the published {archive.md5} "
                                 f"(corrupt or another version)")
            return f"size + md5 {got[:8]} match"
        with zipfile.ZipFile(path) as z:
            n = len(z.namelist())
        return f"zip with {n} members (no checksum recorded; members are verified when extracted)"
    except zipfile.BadZipFile as e:
        raise EznasError(f"{path}: not a readable zip archive ({e})") from None
    except OSError as e:
        raise EznasError(f"{path}: cannot read ({e.strerror or e})") from None


def _check_size(path: Path, expected: int | None) -> None:
    size = path.stat().st_size
    if expected is not None and size != expected:
        raise EznasError(f"{path}: {size:,} bytes, expected {expected:,} (truncated, corrupt or another version)")


def _check_entries(path: Path, entries: Any, where: str) -> int:
    if not isinstance(entries, list) or not entries:
        raise EznasError(f"{path}: {where} is not a non-empty list of NDS entries")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or any(k not in e for k in _ENTRY_KEYS) or not e["test_ep_top1"]:
            raise EznasError(f"{path}: {where} entry {i} lacks one of {', '.join(_ENTRY_KEYS)}")
    return len(entries)


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"{path}: not valid JSON ({e}); the file is truncated or corrupt") from None


def _check_nds(entry: DataFile, path: Path) -> str:
    n = _check_entries(path, _load_json(path), "the file")
    return f"structure ok: {n} entries"


def _check_reruns(entry: DataFile, path: Path) -> str:
    data = _load_json(path)
    if not isinstance(data, dict) or set(data) != {"top", "mid"}:
        raise EznasError(f"{path}: expected a JSON object with keys 'top' and 'mid'")
    n = sum(_check_entries(path, data[k], f"'{k}'") for k in ("top", "mid"))
    return f"structure ok: {n} entries"


def _check_npz(entry: DataFile, path: Path) -> str:
    try:
        with np.load(path, allow_pickle=False) as d:
            images, labels = d["images"], d["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise EznasError(f"{path}: unreadable image sample ({e}); "
                         f"expected an .npz with 'images' and 'labels'") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise EznasError(f"{path}: images are {images.dtype} {list(images.shape)}, expected uint8 [N,32,32,3]")
    if labels.dtype != np.int64 or labels.shape != (len(images),):
        raise EznasError(f"{path}: labels are {labels.dtype} {list(labels.shape)}, expected int64 [{len(images)}]")
    k = entry.classes
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= k or len(np.unique(labels)) != k:
        raise EznasError(f"{path}: labels must cover exactly the classes 0..{k - 1}")
    return f"structure ok: {len(images):,} images, {k} classes"


_STRUCTURE = {"nds": _check_nds, "reruns": _check_reruns, "npz": _check_npz}
