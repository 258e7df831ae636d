"""Ground truth: a task id -> the benchmark's architectures with their trained accuracy.

One documented function, `load_task`, returns plain records (dicts) in the benchmark's own
order; `sample` draws a deterministic subset. Network building lives in `spaces`.

Sources (found through `eznas.datadir`):

- ``nb201/nats_bench.csv``: NAS-Bench-201 test accuracy after the 200-epoch schedule,
  row i = architecture index i.
- ``nds/<stem>.json``: an NDS sweep; accuracy = 100 - final-epoch top-1 test error.
- ``naslib/zc_nasbench101.json``, ``naslib/zc_nasbench301.json``: the NAS-Bench-Suite-Zero
  samples (500 architectures each, from NASLib); accuracy = ``val_accuracy`` (validation, %;
  NB301's comes from its surrogate benchmark API).
"""

from __future__ import annotations

import csv
import functools
import json
import os
from typing import Any

import numpy as np

from eznas import datadir
from eznas.errors import EznasError
from eznas.tasks import Task, parse_task

NB201_FILE = "nb201/nats_bench.csv"
NB201_COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}
NB201_SIZE = 15625
NASLIB_FILES = {"nb101": "naslib/zc_nasbench101.json", "nb301": "naslib/zc_nasbench301.json"}
_NASLIB_ROOTS = {"nb101": "nasbench101", "nb301": "nasbench301"}
_NASLIB_FIELDS = ("val_accuracy", "params", "flops")


def task_file(task: str | Task) -> str:
    """The data file holding a task's ground truth (relative to the data directory; a user space's CSV as declared)."""
    t = parse_task(task)
    if t.user is not None:
        return t.user.truth
    if t.space == "nb201":
        return NB201_FILE
    return NASLIB_FILES[t.space] if t.space in NASLIB_FILES else f"nds/{t.key}.json"


def load_task(task: str | Task, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Return every architecture of ``task`` as ``{"index", "arch", "accuracy", ...}``.

    ``arch`` is the NB201 arch string, the NDS entry's ``net`` dict, or the NB101 / NB301
    NASLib key string. ``accuracy`` is in %: the final test accuracy (NB201, NDS) or the
    validation accuracy (NB101, NB301). NDS, NB101 and NB301 records also carry the authors'
    ``params`` and ``flops`` (integer counts); NB101 and NB301 records also carry ``zc``, the
    zero-cost proxy values NAS-Bench-Suite-Zero computed (``{"synflow": ..., "snip": ...}``).
    Records come in the benchmark's own order (``index`` = position in the file).
    """
    t = parse_task(task)
    if t.user is not None:
        return t.user.records()
    path = datadir.find(task_file(t), data_dir)
    if t.space == "nb201":
        rows = _read_nb201(str(path.resolve()))
        column = NB201_COLUMNS[t.key]
        return [{"index": i, "arch": r["ArchitectureString"], "accuracy": r[column]} for i, r in enumerate(rows)]
    if t.space in NASLIB_FILES:
        return [{**r, "zc": dict(r["zc"])} for r in _read_naslib(str(path.resolve()), t.space, t.key)]
    return [dict(r) for r in _read_nds(str(path.resolve()))]


def sample(
    task: str | Task, k: int, seed: int, data_dir: str | os.PathLike | None = None,
    exclude: set[int] | None = None,
) -> list[dict[str, Any]]:
    """A deterministic sample of ``k`` records of ``task`` (without replacement).

    ``k`` larger than what is available returns everything available, in sampled order.
    ``exclude`` removes record indices first (e.g. networks seen during evolution).
    """
    records = load_task(task, data_dir)
    if exclude:
        records = [r for r in records if r["index"] not in exclude]
    if k <= 0:
        raise EznasError(f"sample size must be positive, got {k}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))[: min(k, len(records))]
    return [records[i] for i in order]


def arch_index(arch: str, data_dir: str | os.PathLike | None = None) -> int:
    """NB201 architecture string -> its benchmark index (0..15624)."""
    from eznas.spaces.nb201 import parse_arch

    parse_arch(arch)
    table = {r["arch"]: r["index"] for r in load_task("nb201:cifar10", data_dir)}
    if arch not in table:
        raise EznasError(f"arch {arch!r} is well formed but not in {NB201_FILE}")
    return table[arch]


def arch_string(index: int, data_dir: str | os.PathLike | None = None) -> str:
    """NB201 benchmark index -> architecture string."""
    records = load_task("nb201:cifar10", data_dir)
    if not 0 <= index < len(records):
        raise EznasError(f"NB201 index {index} out of range 0..{len(records) - 1}")
    return records[index]["arch"]


@functools.lru_cache(maxsize=4)
def _read_nb201(path: str) -> tuple[dict[str, Any], ...]:
    needed = ["ArchitectureString", *NB201_COLUMNS.values()]
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise EznasError(f"{path}: missing column(s) {', '.join(missing)}; is this the NAS-Bench-201 nats_bench.csv?")
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    rows.append({"ArchitectureString": row["ArchitectureString"],
                                 **{c: float(row[c]) for c in NB201_COLUMNS.values()}})
                except (TypeError, ValueError):
                    raise EznasError(f"{path}:{line}: malformed row (truncated or corrupt file); restore the original nats_bench.csv") from None
    except UnicodeDecodeError:
        raise EznasError(f"{path}: not a text CSV file; restore the original nats_bench.csv") from None
    if len(rows) != NB201_SIZE:
        raise EznasError(f"{path}: {len(rows)} architectures, expected {NB201_SIZE} (truncated file?); restore the original nats_bench.csv")
    return tuple(rows)


@functools.lru_cache(maxsize=16)
def _read_nds(path: str) -> tuple[dict[str, Any], ...]:
    try:
        with open(path) as f:
            entries = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"{path}: malformed JSON ({e.msg if hasattr(e, 'msg') else e}); the file is truncated or corrupt, restore it from the NDS data.zip") from None
    if not isinstance(entries, list) or not entries:
        raise EznasError(f"{path}: expected a non-empty JSON list of NDS entries")
    records = []
    for i, e in enumerate(entries):
        try:
            records.append({"index": i, "arch": e["net"], "accuracy": 100.0 - float(e["test_ep_top1"][-1]),
                            "params": int(e["params"]), "flops": int(e["flops"])})
        except (KeyError, TypeError, ValueError, IndexError):
            raise EznasError(f"{path}: entry {i} lacks net/test_ep_top1/params/flops; is this an NDS sweep file?") from None
    return tuple(records)


@functools.lru_cache(maxsize=4)
def _read_naslib(path: str, space: str, dataset: str) -> tuple[dict[str, Any], ...]:
    """Records of a NAS-Bench-Suite-Zero file ``{"nasbenchXXX": {dataset: {key: entry}}}``."""
    root = _NASLIB_ROOTS[space]
    fix = f"restore the original naslib/data/zc_{root}.json of NASLib"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"{path}: malformed JSON ({e}); the file is truncated or corrupt, {fix}") from None
    entries = data.get(root) if isinstance(data, dict) else None
    entries = entries.get(dataset) if isinstance(entries, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise EznasError(f"{path}: no architectures under [{root!r}][{dataset!r}]; {fix}")
    records = []
    for i, (key, e) in enumerate(entries.items()):
        try:
            numbers = {k: float(e[k]) for k in _NASLIB_FIELDS}
            zc = {k: float(v) for k, v in e.items() if k not in _NASLIB_FIELDS}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise EznasError(f"{path}: entry {i} ({key}) lacks a number for one of "
                             f"{', '.join(_NASLIB_FIELDS)} or has a non-numeric proxy value; {fix}") from None
        records.append({"index": i, "arch": key, "accuracy": numbers["val_accuracy"],
                        "params": round(numbers["params"] * 1e6), "flops": round(numbers["flops"] * 1e6),
                        "zc": zc})
    return tuple(records)
