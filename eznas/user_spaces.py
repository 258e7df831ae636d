"""A user's own search space as a task, ``user:NAME``, declared in a ``[spaces.NAME]`` table of TOML::

    [spaces.myspace]
    builder = "mynets:build"       # module:function, called as build(arch: str, num_classes: int) -> nn.Module
    truth = "myspace.csv"          # columns arch, accuracy (%); optional params, flops (integers)
    images = "cifar10"             # what the networks see: cifar10, cifar100 or noise
    resolution = 32                # input side in pixels
    classes = 10                   # classifier width

in a run config (then ``eznas evolve``, ``inspect`` and ``export`` know it) or in any TOML file given
as ``--spaces FILE`` (``eznas stats``, ``evaluate``, ``search``, ``info``). Relative paths are taken
from that file's directory, which is also put on the import path of the builder's module (in the
workers too: a `UserSpace` travels inside its `eznas.tasks.Task`). Everything is checked when the
space is declared, so a bad builder or CSV stops a command before any work: one line, status 2.
A network the builder fails on is left out of a run (with one warning), as any failed network is.
"""

from __future__ import annotations

import csv
import functools
import importlib
import math
import os
import sys
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eznas.errors import EznasError

IMAGES = ("cifar10", "cifar100", "noise")
KEYS = ("builder", "truth", "images", "resolution", "classes")
_REGISTRY: dict[str, UserSpace] = {}


@dataclass(frozen=True)
class UserSpace:
    """One declared space (paths absolute)."""

    name: str
    builder: str  # "module:function"
    truth: str  # the CSV of trained accuracies
    base: str  # directory of the declaring file: relative paths and the builder's import path start there
    images: str = "cifar10"
    resolution: int = 32
    classes: int = 10

    def build(self, arch: str, num_classes: int) -> Any:
        """The builder's network for ``arch``; `EznasError` if it returns no ``torch.nn.Module``."""
        import torch

        net = _builder(self.builder, self.base)(arch, num_classes)
        if not isinstance(net, torch.nn.Module):
            raise EznasError(f"space {self.name}: {self.builder} returned a {type(net).__name__} for {arch!r}, "
                             "not a torch.nn.Module; make it return the network")
        return net

    def records(self) -> list[dict[str, Any]]:
        """The CSV's architectures as benchmark records (``index`` = row position)."""
        return [dict(r) for r in _read_truth(self.truth, self.name)]

    def to_dict(self) -> dict[str, Any]:
        """The table that declares this space again (paths absolute)."""
        return {k: v for k, v in asdict(self).items() if k != "name"}


def declare(name: str, table: Any, base: Path, where: str) -> UserSpace:
    """Check a ``[spaces.NAME]`` table (builder importable and callable, CSV readable) and register the space."""
    if not name.replace("_", "").replace("-", "").isalnum():
        raise EznasError(f"{where}: space name {name!r}: use letters, digits, '_' and '-'")
    if not isinstance(table, dict):
        raise EznasError(f"{where}: [spaces.{name}] must be a table with keys {', '.join(KEYS)}")
    unknown = set(table) - set(KEYS) - {"base"}
    if unknown:
        raise EznasError(f"{where}: [spaces.{name}] has unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(KEYS)}")
    for key in ("builder", "truth"):
        if not isinstance(table.get(key), str):
            raise EznasError(f"{where}: [spaces.{name}] needs {key} = \"...\" (see eznas/user_spaces.py)")
    images, resolution, classes = table.get("images", "cifar10"), table.get("resolution", 32), table.get("classes", 10)
    if images not in IMAGES:
        raise EznasError(f"{where}: [spaces.{name}] images = {images!r}; use one of {', '.join(IMAGES)}")
    for key, value, high in (("resolution", resolution, 1024), ("classes", classes, 100_000)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise EznasError(f"{where}: [spaces.{name}] {key} = {value!r}; use an integer in 1..{high}")
    home = Path(table.get("base", base)).resolve()
    space = UserSpace(name, table["builder"], str((home / table["truth"]).resolve()), str(home), images, resolution,
                      classes)
    _builder(space.builder, space.base)
    _check_builds(space, _read_truth(space.truth, name)[0]["arch"])
    known = _REGISTRY.get(name)
    if known is not None and known != space:
        raise EznasError(f"{where}: space {name} is declared twice, differently; give each space one table")
    _REGISTRY[name] = space
    return space


def load_file(path: str | os.PathLike) -> list[UserSpace]:
    """Declare every ``[spaces.NAME]`` table of a TOML file (``--spaces FILE``)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EznasError(f"--spaces {path}: not found; give a TOML file with [spaces.NAME] tables") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise EznasError(f"--spaces {path}: not readable TOML ({' '.join(str(e).split())}); fix the file") from None
    tables = doc.get("spaces")
    if not isinstance(tables, dict) or not tables:
        raise EznasError(f"--spaces {path}: no [spaces.NAME] table; declare your space as in eznas/user_spaces.py")
    return [declare(name, table, path.parent, str(path)) for name, table in tables.items()]


def lookup(name: str) -> UserSpace | None:
    """The declared space ``name``, or None."""
    return _REGISTRY.get(name)


@functools.lru_cache(maxsize=32)
def _builder(spec: str, base: str) -> Callable[..., Any]:
    """The function ``module:function`` names, imported with ``base`` on the import path."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EznasError(f"builder {spec!r}: write it as 'module:function' (e.g. 'mynets:build')")
    if base not in sys.path:
        sys.path.insert(0, base)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module failing to import is the user's to fix
        raise EznasError(f"builder {spec!r}: cannot import {module_name} ({type(e).__name__}: "
                         f"{' '.join(str(e).split())}); put it on the import path or next to the TOML file") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise EznasError(f"builder {spec!r}: {module_name} has no function {attr}; name a callable "
                         "build(arch, num_classes)")
    return func


def _check_builds(space: UserSpace, arch: str) -> None:
    """Build the first architecture without memory (meta device): a builder that returns no module is bad
    input; one that raises on this arch is not (that network is left out when a run gets to it)."""
    import torch

    try:
        with torch.device("meta"):
            space.build(arch, space.classes)
    except EznasError:
        raise
    except Exception:  # noqa: BLE001 - a failing architecture is the run's to report
        pass


@functools.lru_cache(maxsize=32)
def _read_truth(path: str, name: str) -> tuple[dict[str, Any], ...]:
    """The CSV rows as records; `EznasError` for a missing column, a non-numeric value or a repeated arch."""
    fix = "give a CSV with columns arch and accuracy (%), optionally params and flops"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise EznasError(f"space {name}: truth {path} not found; {fix}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EznasError(f"space {name}: truth {path} is not readable CSV ({e}); {fix}") from None
    columns = set(rows[0]) if rows else set()
    missing = {"arch", "accuracy"} - columns
    if missing:
        what = f"has no column {sorted(missing)[0]!r}" if rows else "holds no architectures"
        raise EznasError(f"space {name}: {path} {what}; {fix}")
    records, seen = [], {}
    for i, row in enumerate(rows):
        where = f"space {name}: {path} row {i + 2}"
        arch = (row["arch"] or "").strip()
        if not arch:
            raise EznasError(f"{where}: empty arch; {fix}")
        if arch in seen:
            raise EznasError(f"{where}: arch {arch[:60]!r} repeats row {seen[arch] + 2}; give each architecture once")
        seen[arch] = i
        record: dict[str, Any] = {"index": i, "arch": arch, "accuracy": _number(row["accuracy"], where, "accuracy")}
        for key in ("params", "flops"):
            if row.get(key) not in (None, ""):
                record[key] = int(_number(row[key], where, key))
        records.append(record)
    return tuple(records)


def _number(text: str | None, where: str, column: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EznasError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise EznasError(f"{where}: {column} {text!r} is not a finite number")
    return value
