"""Writing files so that a reader never sees half of one: the one atomic writer of eznas.

Every file eznas writes (statistics, score caches, checkpoints, logs, tables, exported proxies)
goes through `write_atomic`: the bytes go to a uniquely named temporary file in the target's
directory, then ``os.replace`` moves it into place. A crash leaves the old file or the new one,
never a mix; two processes writing the same file leave one whole version.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from eznas.errors import EznasError


def write_atomic(path: str | os.PathLike, data: str | bytes, *, durable: bool = False,
                 fix: str = "check that the directory is writable and has free space") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its directory; returns the path.

    ``durable`` also flushes the file to disk before the rename (checkpoints). An unwritable
    place is an `EznasError` naming the path, the reason and ``fix``.
    """
    path = Path(path)
    blob = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise EznasError(f"cannot write {path}: {e.strerror}; {fix}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise EznasError(f"cannot write {path}: {e.strerror}; {fix}") from None
        raise
    return path
