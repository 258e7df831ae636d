"""A run directory and the record of an exported proxy: their files, schemas and random draws.

An evolution run writes ``RUN/``::

    config.json       the resolved config (written when the run starts)
    checkpoint.json   everything a resume needs, rewritten after every generation (`CHECKPOINT_KEYS`)
    log.jsonl         one JSON record per generation (the checkpoint's ``history``)
    heldout.json      held-out taus of inspected programs, a cache of `eznas inspect`
    fitness.png, front.csv   written by `eznas inspect`

``eznas export`` writes ``NAME.py`` and ``NAME.json``, the record (`run_record`): the program,
how it scored, the fitness history, the run's config and seed, its wall time and machine.

Every random draw that another command must reproduce lives here too: `derive_seed`, the
evolution pools (`pool_records`) and the held-out networks (`heldout_records`), so that
`eznas evaluate --exclude-run` and `eznas inspect` leave out exactly the networks a run used,
from its directory or from an exported record alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eznas import benchmarks, config as config_mod
from eznas.errors import EznasError
from eznas.files import mismatch, read_json, remove_stale, write_atomic
from eznas.tasks import parse_task

CHECKPOINT = "checkpoint.json"
CHECKPOINT_VERSION = 1
PROGRAM_ROW = {"expr": str, "infix": str, "size": int, "depth": int, "fitness": float, "taus": {str: float},
               "generation": int}  # a program scored on the whole pool
HISTORY_ROW = {"gen": int, "best": float, "median": float, "hof_fitness": float, "seconds": float}
CHECKPOINT_SCHEMA = {"version": int, "config": dict, "next_generation": int, "population": [str], "fitness": [float],
                     "scored": {str: PROGRAM_ROW}, "hall_of_fame": [PROGRAM_ROW], "pareto_front": [PROGRAM_ROW],
                     "history": [HISTORY_ROW], "pools": {str: [int]}, "elapsed": float}
CHECKPOINT_KEYS = tuple(CHECKPOINT_SCHEMA)
RECORD_SCHEMA = {"expression": str, "config": dict, "fitness_history": [HISTORY_ROW]}  # what read_run needs
LOG = "log.jsonl"
CONFIG = "config.json"
HELDOUT = "heldout.json"


def derive_seed(*parts: Any) -> int:
    """A 32-bit seed from the run seed and a position (generation, index, purpose)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little")


# ----------------------------------------------------------------------------- networks a run uses

def pool_records(config: config_mod.Config, task: str, data_dir: str | None = None) -> list[dict[str, Any]]:
    """The evolution pool of ``task`` (index order): a sample drawn from the run seed and the task alone."""
    records = benchmarks.sample(task, config.tasks.pool_size, derive_seed(config.run.seed, "pool", task), data_dir)
    return sorted(records, key=lambda r: r["index"])


def used_indices(pools: dict[str, list[int]], task: str) -> set[int]:
    """Benchmark indices of ``task``'s space that an evolution run used (its ``pools``).

    NB201 datasets share one index space (the same architectures), so an NB201 network used on
    any dataset counts; an NDS file is its own space.
    """
    target = parse_task(task)
    used: set[int] = set()
    for t, idx in pools.items():
        pt = parse_task(t)
        if pt.space == target.space and (pt.space == "nb201" or pt.key == target.key):
            used.update(idx)
    return used


def validation_records(task: str, config: config_mod.Config, pools: dict[str, list[int]],
                       data_dir: str | None) -> list[dict[str, Any]]:
    """Validation networks of ``task`` (``tasks.validate``): a seeded sample disjoint from the evolution pools,
    on which hall-of-fame programs are compared to choose one (policy ``validation``), never fitness."""
    records = benchmarks.sample(task, config.tasks.validate_size, derive_seed(config.run.seed, "validate", task),
                                data_dir, exclude=used_indices(pools, task))
    return sorted(records, key=lambda r: r["index"])


def heldout_records(task: str, config: config_mod.Config, used: dict[str, list[int]],
                    data_dir: str | None) -> list[dict[str, Any]]:
    """Held-out networks of ``task``: a seeded sample disjoint from every network the run ``used`` in the
    same space (`RunInfo.used`: its evolution pools and its validation networks)."""
    records = benchmarks.sample(task, config.tasks.heldout_size, derive_seed(config.run.seed, "heldout", task),
                                data_dir, exclude=used_indices(used, task))
    return sorted(records, key=lambda r: r["index"])


# ----------------------------------------------------------------------------- the run directory

def prepare(out: Path, resume: bool, force: bool) -> None:
    """Check the run directory: writable, and not holding another run unless ``resume``/``force`` (which
    removes the old run's held-out cache)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EznasError(f"cannot create run directory {out}: {e.strerror}; choose another --out") from None
    if not os.access(out, os.W_OK):
        raise EznasError(f"run directory {out} is not writable; choose another --out")
    remove_stale(out)  # temporary files of writers killed here before
    has_run = (out / CHECKPOINT).exists()
    if resume and not has_run:
        raise EznasError(f"--resume: {out} holds no checkpoint to resume; drop --resume to start a run")
    if has_run and not resume and not force:
        raise EznasError(f"{out} already holds a run; pass --resume to continue it or --force to start over")
    if has_run and force:
        (out / HELDOUT).unlink(missing_ok=True)  # held-out taus of the old run's config, not the new one's


def write_config(out: Path, config: config_mod.Config) -> None:
    """Write the resolved config (``config.json``)."""
    write_atomic(out / CONFIG, config_mod.dump(config), fix="choose another --out")


def write_checkpoint(out: Path, checkpoint: dict[str, Any]) -> None:
    """Write the checkpoint (keys `CHECKPOINT_KEYS`) and the JSONL logbook of its history, each atomically."""
    write_atomic(out / CHECKPOINT, json.dumps(checkpoint, indent=1), durable=True, fix="choose another --out")
    write_atomic(out / LOG, "".join(json.dumps(r) + "\n" for r in checkpoint["history"]), durable=True,
                 fix="choose another --out")


def read_checkpoint(out: Path) -> dict[str, Any]:
    """A run directory's checkpoint, checked against `CHECKPOINT_SCHEMA`, its config validated and its
    programs parsed; a missing, corrupt or foreign one is an `EznasError` naming the file and the fix."""
    path = out / CHECKPOINT
    if not path.exists():
        raise EznasError(f"{path} not found: {out} holds no eznas run (run 'eznas evolve CONFIG --out {out}')")
    fix = "restore it from a copy, or start the run over with --force"
    doc = read_json(path, fix)
    if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
        raise EznasError(f"{path} is not an eznas checkpoint of version {CHECKPOINT_VERSION}; {fix}")
    problem = mismatch(doc, CHECKPOINT_SCHEMA, "the checkpoint")
    if problem is None and doc["next_generation"] < 0:
        problem = f"next_generation is {doc['next_generation']}"
    if problem is None and len(doc["fitness"]) != len(doc["population"]):
        problem = f"{len(doc['fitness'])} fitness values for {len(doc['population'])} programs"
    if problem is not None:
        raise EznasError(f"{path} is damaged: {problem}; {fix}")
    config_mod.from_dict(doc["config"], source=str(path))
    for text in [*doc["population"], *(r["expr"] for r in doc["hall_of_fame"] + doc["pareto_front"])]:
        stored_program(text, path)
    return doc


def stored_program(text: str, path: Path) -> Any:
    """The program ``text`` read from the file ``path``, parsed (`eznas.gp.parse`); an unparsable one is an
    `EznasError` naming the file and the fix."""
    from eznas import gp as programs  # DEAP: loaded only when a program is read

    try:
        return programs.parse(text)
    except EznasError as e:
        raise EznasError(f"{path}: {e}; the file was edited or comes from another eznas version: "
                         "restore it, or start over") from None


def read_heldout(out: Path) -> dict[str, dict[str, float]]:
    """The held-out taus cached in ``heldout.json`` (program -> task -> tau); empty if none, or (with a
    warning) if the file is damaged: it is a cache, recomputed on demand."""
    path = out / HELDOUT
    if not path.is_file():
        return {}
    try:
        doc = read_json(path, "it is recomputed")
        problem = mismatch(doc, {str: {str: float}}, "heldout.json")
    except EznasError as e:
        problem = str(e)
    if problem is not None:
        warnings.warn(f"{path} is unreadable ({problem}); recomputing the held-out taus", stacklevel=2)
        return {}
    return doc


def write_heldout(out: Path, taus: dict[str, dict[str, float]]) -> None:
    """Write ``heldout.json``."""
    write_atomic(out / HELDOUT, json.dumps(taus, indent=1))


# ----------------------------------------------------------------------------- the exported record

def run_record(checkpoint: dict[str, Any], rank: int, run: str) -> dict[str, Any]:
    """What goes beside an exported proxy (``NAME.json``): the program, how it scored, the
    fitness history, the run's config and seed, its wall time and the machine it ran on."""
    import torch  # the version only; torch is loaded by every command that exports

    from eznas import gp as programs

    row = checkpoint["hall_of_fame"][rank]
    return {
        "run": run, "rank": rank, "expression": row["expr"], "infix": programs.infix(programs.parse(row["expr"])),
        "size": row["size"],
        "pool_fitness": row["fitness"], "pool_taus": row["taus"], "found_at_generation": row["generation"],
        "generations": checkpoint["next_generation"], "evolution_seconds": checkpoint["elapsed"],
        "seed": checkpoint["config"]["run"]["seed"], "config": checkpoint["config"],
        "fitness_history": [{k: h[k] for k in ("gen", "best", "median", "hof_fitness", "seconds")}
                            for h in checkpoint["history"]],
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__},
    }


def read_record(path: str | os.PathLike, where: str) -> dict[str, Any]:
    """The record that `run_record` wrote (or any JSON object with an ``expression``), its expression parsed;
    ``where`` starts the one-line `EznasError` for a missing, unreadable or foreign file."""
    path = Path(path)
    if not path.exists():
        raise EznasError(f"{where}: {path} not found; give the .json that 'eznas export' writes beside a proxy")
    try:
        record = read_json(path, "give the .json that 'eznas export' writes")
    except EznasError as e:
        raise EznasError(f"{where}: {e}") from None
    if not isinstance(record, dict) or not isinstance(record.get("expression"), str):
        raise EznasError(f"{where}: {path} has no 'expression'; give the .json that 'eznas export' writes")
    stored_program(record["expression"], path)
    return record


def source_record(source: str | os.PathLike, rank: int | None) -> dict[str, Any]:
    """The record (`run_record`) of hall-of-fame row ``rank`` (default 0) of run directory ``source``, or the
    exported record ``source`` itself (then ``rank`` must be None); a missing row is a one-line `EznasError`."""
    path = Path(source)
    if is_record(path):
        if rank is not None:
            raise EznasError(f"--rank: {path} is a record of one program; drop --rank")
        return read_record(path, "record")
    ckpt = read_checkpoint(path)
    rank = rank or 0
    if not 0 <= rank < len(ckpt["hall_of_fame"]):
        raise EznasError(f"--rank {rank} does not exist: {path} has hall-of-fame ranks "
                         f"0..{len(ckpt['hall_of_fame']) - 1}")
    return run_record(ckpt, rank, str(path))


def is_record(source: str | os.PathLike) -> bool:
    """Whether ``source`` names an exported ``.json`` run record rather than a run directory."""
    path = Path(source)
    return path.suffix == ".json" and not path.is_dir()


@dataclass(frozen=True)
class RunInfo:
    """What evaluations need of an evolution run: its config, pools, validation networks and fitness
    per generation."""

    config: config_mod.Config
    pools: dict[str, list[int]]  # evolution task -> benchmark indices
    validation: dict[str, list[int]]  # validation task -> benchmark indices
    history: list[dict[str, Any]]  # per generation: gen, best, median, hof_fitness, ...

    @property
    def used(self) -> dict[str, list[int]]:
        """Every network the run saw, by task: what a held-out evaluation leaves out (`used_indices`)."""
        return {t: [*self.pools.get(t, []), *self.validation.get(t, [])] for t in {**self.pools, **self.validation}}


def read_run(source: str | os.PathLike, data_dir: str | None = None) -> RunInfo:
    """An evolution run from its directory, or from the ``.json`` record that ``eznas export``
    wrote of one of its programs (then the pools are drawn again from the record's config, as the
    run drew them: `pool_records`), so held-out evaluations need no run directory."""
    path = Path(source)
    if is_record(path):
        record = read_record(path, "run record")
        problem = mismatch(record, RECORD_SCHEMA, "the record")
        if problem is not None:
            raise EznasError(f"run record: {path} is damaged ({problem}); give the .json that 'eznas export' wrote")
        cfg = config_mod.from_dict(record["config"], source=str(path))
        pools = {t: [r["index"] for r in pool_records(cfg, t, data_dir)] for t in cfg.tasks.evolve}
        history = record["fitness_history"]
    else:
        ckpt = read_checkpoint(path)
        cfg = config_mod.from_dict(ckpt["config"], source=str(path / CHECKPOINT))
        pools, history = ckpt["pools"], ckpt["history"]
    validation = {t: [r["index"] for r in validation_records(t, cfg, pools, data_dir)] for t in cfg.tasks.validate}
    return RunInfo(cfg, pools, validation, history)
