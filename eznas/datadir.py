"""Where the benchmark data lives: ``--data-dir``, then ``$EZNAS_DATA_DIR``, then ``./data``,
then ``../shared/data``. The first directory that holds the requested file wins."""

from __future__ import annotations

import os
from pathlib import Path

from eznas.errors import EznasError

ENV_VAR = "EZNAS_DATA_DIR"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The data directories searched, in lookup order (an explicit ``data_dir`` is searched alone)."""
    if data_dir is not None:
        return [Path(data_dir)]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs += [Path("data"), Path("..") / "shared" / "data"]
    return dirs


def find(relative: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the first existing ``<dir>/<relative>`` in lookup order.

    Raises `EznasError` naming the missing file and every place looked.
    """
    dirs = candidate_dirs(data_dir)
    for d in dirs:
        path = d / relative
        if path.is_file():
            return path
    looked = ", ".join(str((d / relative)) for d in dirs)
    raise EznasError(
        f"data file {relative} not found (looked in: {looked}); pass --data-dir DIR "
        f"or set {ENV_VAR} to a directory holding it"
    )
