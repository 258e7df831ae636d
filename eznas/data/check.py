"""``eznas data check``: what eznas finds, where, whether it verifies, and which tasks it allows.

Each known file is looked up as eznas looks it up (`eznas.datadir`): the first directory of
the lookup order that holds it wins. That copy is then verified against `eznas.data.sources`.
The default experiment is ready when every required file is found and verifies. Optional
files that are absent are listed, and that is not an error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from eznas import benchmarks, datadir
from eznas.data.sources import FILES, IMAGENET16_NOTE, DataFile
from eznas.data.verify import verify_file
from eznas.errors import EznasError
from eznas.tasks import NASLIB_DATASETS, NASLIB_SPACES, NB201_DATASETS, parse_task

_WIDTH = max(len(f.path) for f in FILES)


def _lookup_labels(data_dir: str | os.PathLike | None = None) -> list[str]:
    """How each directory of `datadir.candidate_dirs` got into the lookup order."""
    if data_dir is not None:
        return ["--data-dir"]
    return ([f"${datadir.ENV_VAR}"] if os.environ.get(datadir.ENV_VAR) else []) + ["./data", "../shared/data"]


def check(data_dir: str | os.PathLike | None = None, echo: Callable[[str], None] = print) -> bool:
    """Report every known data file and the tasks it makes available.

    Parameters
    ----------
    data_dir : search only this directory (default: the whole lookup order).
    echo : receives the report, line by line.

    Returns
    -------
    bool
        True when every file the default experiment needs is present and verifies.
    """
    dirs = datadir.candidate_dirs(data_dir)
    echo("data directories, in lookup order:")
    for label, d in zip(_lookup_labels(data_dir), dirs):
        echo(f"  {label:<18} {d.resolve()}{'' if d.is_dir() else '  (absent)'}")
    good: dict[str, bool] = {}
    for family in dict.fromkeys(f.family for f in FILES):
        echo(f"{family}:")
        absent = []
        for f in FILES:
            if f.family != family:
                continue
            found = next((d for d in dirs if (d / f.path).is_file()), None)
            if found is None:
                good[f.path] = False
                if f.required:
                    echo(f"  {f.path:<{_WIDTH}}  MISSING (required)")
                else:
                    absent.append(f.name)
                continue
            good[f.path], text = _verify(f, found)
            echo(f"  {f.path:<{_WIDTH}}  {text}")
        if absent:
            echo(f"  absent (optional): {', '.join(absent)}")
    echo(IMAGENET16_NOTE)
    _report_tasks(good, echo)
    bad = [f.path for f in FILES if f.required and not good[f.path]]
    if bad:
        echo(f"default experiment: NOT ready; missing or failing: {', '.join(bad)}. "
             f"Run 'eznas data fetch' (see 'eznas data fetch --help').")
        return False
    echo(f"default experiment: ready ({sum(f.required for f in FILES)} required files present and verified)")
    return True


def _verify(f: DataFile, found: Path) -> tuple[bool, str]:
    """Whether the copy of ``f`` in directory ``found`` verifies, and a line saying so."""
    try:
        how = verify_file(f, found / f.path)
    except EznasError as e:
        return False, f"FAILS in {found}: {e}"
    return True, f"ok in {found}: {how}"


def _report_tasks(good: dict[str, bool], echo: Callable[[str], None]) -> None:
    """List the tasks whose ground truth and input images are both present and verified."""
    images = {Path(f.path).stem: f.path for f in FILES if f.kind == "npz"}
    names = [f"nb201:{k}" for k in NB201_DATASETS]
    names += [f"nds:{Path(f.path).stem}" for f in FILES if f.group == "nds" and f.kind == "nds"]
    names += [f"{space}:{d}" for space in NASLIB_SPACES for d in NASLIB_DATASETS]
    available, unavailable = [], []
    for name in names:
        task = parse_task(name)
        ready = good[benchmarks.task_file(task)] and good[images[task.images]]
        if ready:
            available.append(name)
        else:
            unavailable.append(name)
    echo(f"tasks available ({len(available)}): {', '.join(available) or 'none'}")
    if unavailable:
        echo(f"tasks unavailable ({len(unavailable)}, a file they need is absent or fails above): "
             f"{', '.join(unavailable)}")
