"""``eznas data fetch``: put every data file eznas knows into one data directory, verified.

The target is ``--data-dir`` if given, else ``$EZNAS_DATA_DIR`` if set, else ``./data``. This is
the first directory of the lookup order, so eznas finds there what fetch put there.
``../shared/data`` is never written to. Files that are already there and verify are left
alone. A file that fails verification is replaced. Archives are kept under
``<data dir>/archives/``, so a second run downloads nothing it already has, and a fetched data
directory is itself a complete mirror.

Sources: see `eznas.data.sources`. With a mirror (``--mirror URL`` or ``$EZNAS_DATA_MIRROR``),
each data file is first requested as ``URL/<path in the data directory>``. What the mirror does
not have there (HTTP 404) is produced from ``URL/archives/<archive name>``, exactly as from the
public archive. A mirror can therefore be a copy of a data directory, a copy of the three
archives, or both.

Placement is atomic. Every file is written to ``<target>.part``, verified, and moved into place
with `os.replace`. A ``.part`` that fails verification is deleted. An interrupted download
keeps its ``.part``, and the next run resumes it with an HTTP Range request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from eznas import datadir
from eznas.data import convert
from eznas.data.download import NotFound, download, part_path
from eznas.data.sources import ARCHIVE_DIR, ARCHIVES, FILES, GROUPS, Archive, DataFile
from eznas.data.verify import verify_archive, verify_file
from eznas.errors import EznasError

MIRROR_ENV = "EZNAS_DATA_MIRROR"
Echo = Callable[[str], None]


def target_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory fetch writes to: the first directory of the data lookup order."""
    return datadir.candidate_dirs(data_dir)[0]


def place(part: Path, target: Path, verify: Callable[[Path], str], source: str) -> str:
    """Verify ``part`` and move it to ``target``. If it fails, delete it and leave ``target`` untouched.

    Returns
    -------
    str
        What the verification checked.

    Raises
    ------
    EznasError
        Naming the failure, the rejected source and the untouched target.
    """
    try:
        how = verify(part)
    except EznasError as e:
        part.unlink(missing_ok=True)
        raise EznasError(f"{e}; rejected {source} and deleted it, nothing placed at {target}") from None
    os.replace(part, target)
    return how


def fetch(
    data_dir: str | os.PathLike | None = None, only: str | None = None, mirror: str | None = None,
    echo: Echo = print,
) -> dict[str, int]:
    """Download, extract or convert every data file of the selected groups into the data directory.

    Parameters
    ----------
    data_dir : target directory (default: see `target_dir`).
    only : one of ``"nb201"``, ``"nds"``, ``"images"``, ``"naslib"``; default all four.
    mirror : base URL (``http(s)://`` or ``file://``) of a mirror; default ``$EZNAS_DATA_MIRROR``,
        else the public sources.
    echo : receives one line per file.

    Returns
    -------
    dict
        Counts of files ``placed``, ``present`` (already there and verified) and ``skipped``
        (optional files the source does not have).

    Raises
    ------
    EznasError
        If a required file cannot be obtained or fails verification, or on bad arguments.
    """
    if only is not None and only not in GROUPS:
        raise EznasError(f"unknown data group {only!r}: use one of {', '.join(GROUPS)}")
    mirror = (mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")).rstrip("/") or None
    if mirror is not None and not mirror.startswith(("http://", "https://", "file://")):
        raise EznasError(f"mirror {mirror!r} is not an http://, https:// or file:// URL")
    job = _Fetch(target_dir(data_dir), mirror, echo)
    groups = [only] if only else list(GROUPS)
    echo(f"fetching {', '.join(groups)} into {job.root}" + (f" from mirror {mirror}" if mirror else ""))
    for group in groups:
        try:
            job.group(group)
        except OSError as e:  # local files only: download() turns network errors into EznasError
            raise EznasError(f"{e.filename or job.root}: {e.strerror or e}") from None
    c = job.counts
    echo(f"done: {c['placed']} placed, {c['present']} already there, {c['skipped']} optional not available; "
         f"run 'eznas data check --data-dir {job.root}'")
    return c


class _Fetch:
    """One fetch run: the target root, the mirror, and counts of what happened."""

    def __init__(self, root: Path, mirror: str | None, echo: Echo) -> None:
        self.root, self.mirror, self.echo = root, mirror, echo
        self.counts = {"placed": 0, "present": 0, "skipped": 0}

    def group(self, group: str) -> None:
        """Fetch the files of one group, directly where possible, then from their archives."""
        pending = []
        for f in FILES:
            if f.group == group and not self._present(f) and not self._direct(f):
                pending.append(f)
        for name in dict.fromkeys(f.archive for f in pending):
            files = [f for f in pending if f.archive == name]
            if name is None:
                self._unavailable(files, f"not on the mirror {self.mirror}" if self.mirror
                                  else "not found at the public URL (HTTP 404)")
            else:
                self._from_archive(ARCHIVES[name], files)

    def _present(self, f: DataFile) -> bool:
        target = self.root / f.path
        if not target.exists():
            return False
        try:
            how = verify_file(f, target)
        except EznasError as e:
            self.echo(f"{f.path}: replacing it: {e}")
            return False
        self.echo(f"{f.path}: already there; {how}")
        self.counts["present"] += 1
        return True

    def _direct(self, f: DataFile) -> bool:
        """Download ``f`` itself (from the mirror, or its public URL); False if it must come from an
        archive, or if an optional file is not at its public URL."""
        url = f"{self.mirror}/{f.path}" if self.mirror else f.url
        if url is None:
            return False
        target = self.root / f.path
        try:
            kept = download(url, part_path(target), f.size, f.path)
        except NotFound:
            if self.mirror or not f.required:
                return False
            raise
        how = place(part_path(target), target, lambda p: verify_file(f, p), url)
        self._placed(f.path, f"downloaded from {url}{_resumed(kept)}; {how}")
        return True

    def _from_archive(self, archive: Archive, files: list[DataFile]) -> None:
        path = self.root / ARCHIVE_DIR / archive.name
        if not self._archive_present(archive, path):
            url = f"{self.mirror}/{ARCHIVE_DIR}/{archive.name}" if self.mirror else archive.url
            try:
                kept = download(url, part_path(path), archive.size, f"{ARCHIVE_DIR}/{archive.name}")
            except NotFound:
                if not self.mirror:
                    raise
                self._unavailable(files, f"not on the mirror {self.mirror}, neither as a file "
                                         f"nor in {ARCHIVE_DIR}/{archive.name}")
                return
            how = place(part_path(path), path, lambda p: verify_archive(archive, p), url)
            self.echo(f"{ARCHIVE_DIR}/{archive.name}: downloaded from {url}{_resumed(kept)}; {how}")
        absent = []
        for f in files:
            target = self.root / f.path
            part = part_path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if archive.kind == "zip":
                    if not convert.extract_member(path, f.name, part):
                        absent.append(f)
                        continue
                    made = f"extracted from {ARCHIVE_DIR}/{archive.name}"
                else:
                    made = (f"converted from {ARCHIVE_DIR}/{archive.name} "
                            f"({convert.convert_cifar(path, archive.kind, part)})")
            except EznasError:
                part.unlink(missing_ok=True)
                raise
            how = place(part, target, lambda p, f=f: verify_file(f, p), made)
            self._placed(f.path, f"{made}; {how}")
        self._unavailable(absent, f"not in {ARCHIVE_DIR}/{archive.name}")

    def _archive_present(self, archive: Archive, path: Path) -> bool:
        if not path.exists():
            return False
        try:
            how = verify_archive(archive, path)
        except EznasError as e:
            self.echo(f"{ARCHIVE_DIR}/{archive.name}: replacing it: {e}")
            return False
        self.echo(f"{ARCHIVE_DIR}/{archive.name}: already there; {how}")
        return True

    def _placed(self, path: str, how: str) -> None:
        self.counts["placed"] += 1
        self.echo(f"{path}: {how}")

    def _unavailable(self, files: list[DataFile], why: str) -> None:
        """Stop on a required file the source lacks; report optional ones on one line."""
        required = [f.path for f in files if f.required]
        if required:
            raise EznasError(f"{', '.join(required)}: {why}")
        if files:
            self.counts["skipped"] += len(files)
            self.echo(f"optional, {why}: {', '.join(f.name for f in files)}")


def _resumed(kept: int) -> str:
    return f" (resumed a partial download at {kept:,} bytes)" if kept else ""
