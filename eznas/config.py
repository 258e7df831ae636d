"""Run configuration: TOML -> frozen, validated dataclasses (pycls-style: every option in one
place with a one-line comment and its default).

Sections and keys (defaults in brackets)::

    [run]        seed [0], n_jobs [1], backend ["loky"], address [""], retries [2], timeout [0]
    [tasks]      evolve, heldout, pool_size [200], sample_size [40], heldout_size [1000],
                 aggregate ["mean"], relative_to [[]], validate [[]], validate_size [200]
    [probe]      (eznas.probe.ProbeSettings) batch_size [64], input_kind ["real"], net_seed [0], batch_seed [0],
                 features [64], weight_rows [32], weight_cols [32], max_layers [16],
                 hessian_probes [1], loss ["ce"]
    [evolution]  population [300], generations [60], tournament_size [5], parsimony [0.0], crossover_prob [0.7],
                 mutation_prob [0.3], elites [5], init_min_depth [2], init_max_depth [5],
                 max_depth [10], max_size [40], hall_of_fame [20], pool_fitness_top [10],
                 seed_from [[]], statistics [every one]
    [spaces.NAME] builder, truth, images ["cifar10"], resolution [32], classes [10]: a user's own
                 search space, task user:NAME (eznas/user_spaces.py)

``key=value`` overrides (``evolution.generations=5``) are applied after the file is read.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import primitives
from eznas import user_spaces
from eznas.errors import EznasError
from eznas.backends import BACKENDS, MAX_JOBS
from eznas.parallel import MAX_TIMEOUT, Parallel
from eznas.probe import NET_SCALARS, ProbeSettings
from eznas.tasks import parse_task
from eznas.user_spaces import UserSpace

AGGREGATES = ("mean", "min", "space_mean", "space_min", "space_softmin")
MAX_SEED = 2**32 - 1  # seeds are 32-bit (numpy's and torch's generators take them)
MAX_NETWORKS = 100_000  # per task: pool, sample or held-out networks
MAX_POPULATION = 100_000
MAX_GENERATIONS = 100_000
STATISTICS = tuple(t.name for t in primitives.TERMINALS)  # the data terminals, each a probe statistic


@dataclass(frozen=True)
class RunConfig:
    """Where and how the run executes."""

    seed: int = 0  # master seed: every random choice of the run derives from it
    n_jobs: int = 1  # parallel workers for statistics and fitness
    backend: str = "loky"  # joblib backend: loky, threading, sequential, dask or ray
    address: str = ""  # dask scheduler / ray cluster address ("" = start a local one)
    retries: int = 2  # further attempts for a statistics or fitness job that raises, dies or times out
    timeout: float = 0.0  # seconds a statistics or fitness job may run (0 = no limit)

    @property
    def parallel(self) -> Parallel:
        """The run's parallel settings (`eznas.parallel.Parallel`; timeout 0 is None, no limit)."""
        return Parallel(self.backend, self.address, self.n_jobs, self.retries, self.timeout or None)


@dataclass(frozen=True)
class TasksConfig:
    """Which benchmarks the run evolves on and reports on."""

    evolve: tuple[str, ...] = ("nb201:cifar10", "nds:DARTS_in", "nds:Amoeba_in", "nds:NASNet_in")  # fitness tasks
    heldout: tuple[str, ...] = ("nb201:cifar100", "nb201:ImageNet16-120", "nds:ENAS_in", "nds:PNAS_in",
                                "nds:ResNeXt-A_in", "nds:ResNeXt-B_in")  # reported, never used for selection
    pool_size: int = 200  # networks per evolution task probed and cached (fewer if the task has fewer)
    sample_size: int = 40  # networks per task drawn from the pool each generation for fitness
    heldout_size: int = 1000  # networks per held-out task for reports (disjoint from evolution pools and validation)
    validate: tuple[str, ...] = ()  # tasks whose networks (not in the pools) choose the published program (policy validation), never fitness
    validate_size: int = 200  # networks per validation task (disjoint from evolution pools)
    aggregate: str = "mean"  # fitness over tasks: mean or min of per-task Kendall tau-b; or the mean tau per space family, then their space_mean, space_min or space_softmin
    relative_to: tuple[str, ...] = ()  # per-network statistics (e.g. ["log_params", "log_flops"]): each task's tau counts as its margin over the best of them on the same networks (plain tau-b) before the aggregate


@dataclass(frozen=True)
class EvolutionConfig:
    """The genetic programming loop."""

    population: int = 300  # individuals per generation
    generations: int = 60  # generations after the initial one
    tournament_size: int = 5  # tournament selection size
    parsimony: float = 0.0  # tournaments compare fitness - parsimony * size (gplearn's parsimony coefficient); elites and reports use plain fitness
    crossover_prob: float = 0.7  # probability that a selected pair is mated
    mutation_prob: float = 0.3  # probability that an offspring is mutated
    elites: int = 5  # best individuals copied unchanged into the next generation
    init_min_depth: int = 2  # ramped half-and-half: smallest initial tree depth
    init_max_depth: int = 5  # ramped half-and-half: largest initial tree depth
    max_depth: int = 10  # static limit on tree depth after variation
    max_size: int = 40  # static limit on tree size (nodes) after variation
    hall_of_fame: int = 20  # best programs kept over the whole run, one per phenotype (distinct per-task taus)
    pool_fitness_top: int = 10  # per generation, this many leaders are scored on the whole pool for the hall of fame
    seed_from: tuple[str, ...] = ()  # run directories (their halls of fame) and exported proxies' .json records that open the initial population
    statistics: tuple[str, ...] = STATISTICS  # the data terminals programs may read, the only statistics the pools are probed for: names, or "-NAME" entries for all but those (["-H", "-log_h_trace"]: no Hessian-vector product)


@dataclass(frozen=True)
class Config:
    """A whole run configuration."""

    run: RunConfig = field(default_factory=RunConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    probe: ProbeSettings = field(default_factory=ProbeSettings)  # the [probe] table: eznas.probe.ProbeSettings
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    spaces: tuple[UserSpace, ...] = ()  # [spaces.NAME] tables: users' own search spaces (eznas/user_spaces.py)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (TOML/JSON friendly)."""
        doc = {name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(self, name)).items()}
               for name in _SECTION_CLASSES}
        if self.spaces:
            doc["spaces"] = {s.name: s.to_dict() for s in self.spaces}
        return doc


_SECTION_CLASSES = {"run": RunConfig, "tasks": TasksConfig, "probe": ProbeSettings, "evolution": EvolutionConfig}


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a TOML config, apply ``section.key=value`` overrides, validate, return a `Config`."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EznasError(f"config file {path} not found; see experiments/*.toml for examples") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EznasError(f"{path}: malformed TOML ({e}); fix the syntax") from None
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw, source=str(path))


def from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a plain dict (as read from TOML) into a `Config`."""
    sections: dict[str, Any] = {}
    spaces = raw.get("spaces", {})
    if not isinstance(spaces, dict):
        raise EznasError(f"{source}: [spaces] must hold [spaces.NAME] tables")
    base = Path(source).parent  # relative paths of a user space start at the declaring file
    sections["spaces"] = tuple(user_spaces.declare(name, table, base, source) for name, table in spaces.items())
    for name, value in raw.items():
        if name == "spaces":
            continue
        if name not in _SECTION_CLASSES:
            raise EznasError(f"{source}: unknown section [{name}]; allowed: {', '.join(_SECTION_CLASSES)}, spaces")
        if not isinstance(value, dict):
            raise EznasError(f"{source}: [{name}] must be a table of keys")
        sections[name] = _build_section(_SECTION_CLASSES[name], value, f"{source}: [{name}]")
    if "evolution" in sections:
        e = sections["evolution"]
        sections["evolution"] = dataclasses.replace(e, statistics=allowed_statistics(e.statistics, source))
    config = Config(**sections)
    _validate(config, source)
    return config


def allowed_statistics(entries: tuple[str, ...], source: str = "config") -> tuple[str, ...]:
    """``evolution.statistics`` as the names it allows, in `STATISTICS` order: the names listed, or
    with only ``-NAME`` entries, every statistic but those. An `EznasError` names a bad entry."""
    where = f"{source}: evolution.statistics"
    left_out = tuple(e[1:] for e in entries if e.startswith("-"))
    if left_out and len(left_out) != len(entries):
        raise EznasError(f"{where} = {list(entries)!r} mixes names and -NAME entries; list the statistics "
                         "allowed, or only those left out (each as -NAME)")
    for name in left_out or entries:
        if name not in STATISTICS:
            raise EznasError(f"{where}: unknown statistic {name!r}: use one of {', '.join(STATISTICS)}")
    allowed = tuple(s for s in STATISTICS if (s not in left_out if left_out else s in entries))
    if not allowed:
        raise EznasError(f"{where} = {list(entries)!r} allows no statistic; a program needs at least one")
    return allowed


def _build_section(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise EznasError(f"{where}: unknown key {key!r}; allowed: {', '.join(known)}")
        default = known[key].default
        kwargs[key] = _coerce(value, default, f"{where} {key}")
    try:
        return cls(**kwargs)
    except ValueError as e:  # a section's own range check (ProbeSettings)
        raise EznasError(f"{where}: {e}; fix the value") from None


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # tuple of task ids
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    if not ok:
        raise EznasError(f"{where} = {value!r} has the wrong type; expected {type(default).__name__} like {default!r}")
    return value


def _validate(c: Config, source: str) -> None:
    def check(cond: bool, key: str, value: Any, rule: str) -> None:
        if not cond:
            raise EznasError(f"{source}: {key} = {value!r} is out of range; {rule}")

    check(c.run.backend in BACKENDS, "run.backend", c.run.backend, f"allowed: {', '.join(BACKENDS)}")
    check(0 <= c.run.seed <= MAX_SEED, "run.seed", c.run.seed, f"use 0..{MAX_SEED}")
    check(1 <= c.run.n_jobs <= MAX_JOBS, "run.n_jobs", c.run.n_jobs, f"use 1..{MAX_JOBS}")
    check(0 <= c.run.retries <= 100, "run.retries", c.run.retries, "use 0..100")
    check(0 <= c.run.timeout <= MAX_TIMEOUT, "run.timeout", c.run.timeout,
          f"use seconds from 0 (no limit) to {MAX_TIMEOUT:g} (a week)")
    check(c.tasks.aggregate in AGGREGATES, "tasks.aggregate", c.tasks.aggregate, f"allowed: {', '.join(AGGREGATES)}")
    check(len(c.tasks.evolve) >= 1, "tasks.evolve", list(c.tasks.evolve), "name at least one task")
    for t in (*c.tasks.evolve, *c.tasks.heldout):
        parse_task(t)
    overlap = set(c.tasks.validate) & set(c.tasks.heldout)
    check(not overlap, "tasks.validate", list(c.tasks.validate),
          f"a validation task may not be held out too ({', '.join(sorted(overlap))} is)")
    for t in c.tasks.validate:
        parse_task(t)
    for name in c.tasks.relative_to:
        check(name in NET_SCALARS and name in c.evolution.statistics, "tasks.relative_to", list(c.tasks.relative_to),
              f"name per-network statistics that evolution.statistics allows ({', '.join(s for s in NET_SCALARS if s in c.evolution.statistics)})")
    for key in ("pool_size", "sample_size", "heldout_size", "validate_size"):
        check(2 <= getattr(c.tasks, key) <= MAX_NETWORKS, f"tasks.{key}", getattr(c.tasks, key),
              f"use 2..{MAX_NETWORKS:,} networks")
    check(c.tasks.sample_size <= c.tasks.pool_size, "tasks.sample_size", c.tasks.sample_size, "must not exceed tasks.pool_size")
    e = c.evolution
    check(4 <= e.population <= MAX_POPULATION, "evolution.population", e.population, f"use 4..{MAX_POPULATION:,}")
    check(0 <= e.generations <= MAX_GENERATIONS, "evolution.generations", e.generations, f"use 0..{MAX_GENERATIONS:,}")
    check(2 <= e.tournament_size <= e.population, "evolution.tournament_size", e.tournament_size, "use 2..population")
    check(0.0 <= e.parsimony <= 0.1, "evolution.parsimony", e.parsimony, "use 0..0.1 (fitness lost per node)")
    for key in ("crossover_prob", "mutation_prob"):
        check(0.0 <= getattr(e, key) <= 1.0, f"evolution.{key}", getattr(e, key), "use a probability in [0, 1]")
    check(0 <= e.elites < e.population, "evolution.elites", e.elites, "use 0..population-1")
    check(1 <= e.init_min_depth <= e.init_max_depth, "evolution.init_min_depth", e.init_min_depth, "use 1..init_max_depth")
    check(e.init_max_depth <= e.max_depth, "evolution.init_max_depth", e.init_max_depth, "must not exceed max_depth")
    check(e.max_depth <= 17, "evolution.max_depth", e.max_depth, "use 17 or less (Koza's limit)")
    check(e.max_size >= 3, "evolution.max_size", e.max_size, "use 3 or more")
    check(1 <= e.hall_of_fame <= 1000, "evolution.hall_of_fame", e.hall_of_fame, "use 1..1000")
    check(1 <= e.pool_fitness_top <= e.population, "evolution.pool_fitness_top", e.pool_fitness_top,
          "use 1..population")
    if e.population * e.generations > 200_000:
        warnings.warn(f"{source}: population x generations = {e.population * e.generations:,} evaluations is costly")


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise EznasError(f"override {item!r}: expected section.key=value, e.g. evolution.generations=5")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word is a string
    raw.setdefault(section, {})[name] = value


def dump(config: Config) -> str:
    """The resolved config as JSON text (written into every run directory)."""
    return json.dumps(config.to_dict(), indent=2)
