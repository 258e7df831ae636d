"""A run probes only the statistics its primitive set can use (``evolution.statistics``).

The config key and its errors, the primitive set over a subset of the data terminals (never a
dead end), a subset probe equal bit for bit to the full one, a cache shared by full and reduced
runs (an entry lacking a statistic is probed again, never a KeyError), and a tiny evolution
without the Hessian statistics that runs no Hessian-vector product.
"""

from __future__ import annotations

import json
import random
import tomllib
from pathlib import Path

import pytest
import torch
from deap import gp

import primitives
from conftest import DATA_DIR, needs_data, tiny_config
from eznas import config, evolve, gp as programs, pool
from eznas import probe as probe_module
from eznas.cache import StatsCache
from eznas.errors import EznasError
from eznas.inputs import batch
from eznas.probe import ALL_STATS, HESSIAN_STATS, SIZE_STATS, ProbeSettings, probe
from eznas.run import pool_records
from eznas.spaces import build_network

NO_HESSIAN = ["-H", "-log_h_trace"]
SETTINGS = ProbeSettings(batch_size=16, features=32, weight_rows=16, weight_cols=16, max_layers=8)
TASK = "nb201:cifar10"


def _statistics(value: object) -> tuple[str, ...]:
    return config.from_dict({"evolution": {"statistics": value}}).evolution.statistics


# ----------------------------------------------------------------------------- the config key

def test_default_allows_every_statistic_and_both_forms_resolve_in_terminal_order() -> None:
    assert config.Config().evolution.statistics == config.from_dict({}).evolution.statistics == config.STATISTICS
    assert set(config.STATISTICS) == ALL_STATS == {t.name for t in primitives.TERMINALS}
    assert _statistics(NO_HESSIAN) == tuple(s for s in config.STATISTICS if s not in HESSIAN_STATS)
    assert _statistics(["log_params", "A", "A"]) == ("A", "log_params")
    loaded = config.from_dict(config.from_dict({"evolution": {"statistics": NO_HESSIAN}}).to_dict())
    assert loaded.evolution.statistics == _statistics(NO_HESSIAN)  # config.json reads back the same


@pytest.mark.parametrize("value, needle", [
    (["Hessian"], "unknown statistic 'Hessian': use one of W, dW, H,"),
    (["-Hessian"], "unknown statistic 'Hessian'"),
    (["A", "-H"], "mixes names and -NAME entries"),
    ([], "allows no statistic"),
    (["-" + s for s in config.STATISTICS], "allows no statistic"),
    ("H", "has the wrong type"),
])
def test_bad_statistics_are_one_line_errors(value: object, needle: str) -> None:
    with pytest.raises(EznasError, match="evolution") as info:
        _statistics(value)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_an_old_checkpoint_without_the_key_resumes_as_all_statistics() -> None:
    new = config.Config().to_dict()
    old = {**new, "evolution": {k: v for k, v in new["evolution"].items() if k != "statistics"}}
    assert evolve._results_config(old) == evolve._results_config(new)
    reduced = config.from_dict({"evolution": {"statistics": NO_HESSIAN}}).to_dict()
    assert evolve._results_config(old) != evolve._results_config(reduced)


# ----------------------------------------------------------------------------- the primitive set

def test_the_full_set_is_the_default_one() -> None:
    assert programs.primitive_set() is programs.primitive_set(config.STATISTICS)
    full = programs.primitive_set()
    assert set(full.mapping) == {p.name for p in primitives.PRIMITIVES} | ALL_STATS | set(programs.CONSTANTS)


@pytest.mark.parametrize("allowed", [
    _statistics(NO_HESSIAN), ("A",), ("KA",), ("log_params",), ("H",), ("depth", "log_flops"),
])
def test_a_reduced_set_grows_every_type_it_can_make_without_a_dead_end(allowed: tuple[str, ...]) -> None:
    pset = programs.primitive_set(allowed)
    types = {node.ret for node in pset.mapping.values()}
    terminals = {name for name, node in pset.mapping.items() if isinstance(node, gp.Terminal)}
    assert terminals == set(allowed) | set(programs.CONSTANTS)
    for prim in (n for n in pset.mapping.values() if isinstance(n, gp.Primitive)):
        assert set(prim.args) <= types, prim.name  # only primitives whose arguments can be made
    rng, seen = random.Random(0), set()
    for typ in types:
        for max_depth in range(0, 7):
            for method in ("grow", "full"):
                for _ in range(25):
                    tree = programs.generate(typ, min(2, max_depth), max_depth, method, rng, pset)
                    assert tree.root.ret is typ
                    assert programs.statistics_of(tree) <= set(allowed)
                    if typ is programs.ROOT_TYPE:
                        assert str(programs.parse(str(tree))) == str(tree)  # the full parser reads it
                    seen.update(node.name for node in tree)
    assert seen == set(pset.mapping)


def test_without_weight_statistics_no_weight_primitive_is_left() -> None:
    pset = programs.primitive_set(["A", "G", "log_params"])
    weight_ops = {p.name for p in primitives.PRIMITIVES if primitives.WMat in p.in_types}
    assert weight_ops and not weight_ops & set(pset.mapping)
    assert programs.statistics_of(programs.parse("n_add(agg_mean(w_frob(H)), n_half)")) == {"H"}


def test_a_seed_program_reading_a_left_out_statistic_is_an_error(tmp_path: Path) -> None:
    record = tmp_path / "proxy.json"
    record.write_text(json.dumps({"expression": "agg_mean(log_h_trace)", "config": {}, "fitness_history": []}))
    cfg = config.from_dict({"evolution": {"statistics": NO_HESSIAN, "seed_from": [str(record)]}})
    with pytest.raises(EznasError, match="reading log_h_trace, which evolution.statistics leaves out"):
        evolve.seed_programs(cfg)


# ----------------------------------------------------------------------------- probe and cache

@pytest.fixture(scope="module")
def records() -> list[dict]:
    if DATA_DIR is None:
        pytest.skip("benchmark data not found (set EZNAS_DATA_DIR)")
    cfg = config.from_dict({"tasks": {"evolve": [TASK], "pool_size": 2, "sample_size": 2}})
    return pool_records(cfg, TASK, str(DATA_DIR))


@pytest.fixture
def no_hvp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any Hessian-vector product in this process fails the test."""
    def refuse(*args: object) -> None:
        raise AssertionError("a Hessian-vector product ran")
    monkeypatch.setattr(probe_module, "_hutchinson", refuse)


@needs_data
@pytest.mark.slow
def test_a_subset_probe_equals_the_full_probe_bit_for_bit(records: list[dict]) -> None:
    x, y = batch(TASK, SETTINGS.batch_size, 0, data_dir=DATA_DIR)
    net = build_network(TASK, records[0]["arch"], seed=0)
    full = probe(net, x, y, SETTINGS)
    for needs in (ALL_STATS - HESSIAN_STATS, {"KA", "log_grad_norm"}, {"H"}):
        part = probe(net, x, y, SETTINGS, needs)
        assert part.statistics >= set(needs) | SIZE_STATS
        for name, value in part.layers.items():
            assert torch.equal(value, full.layers[name]), name
        assert all(full.net[k] == v for k, v in part.net.items())


@needs_data
@pytest.mark.slow
def test_full_and_reduced_pools_share_one_cache(tmp_path: Path, records: list[dict], no_hvp: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cache, wanted = StatsCache(tmp_path / "shared"), _statistics(NO_HESSIAN)
    keys = [pool.network_key(TASK, r["arch"], SETTINGS) for r in records]
    reduced = pool.load_pool(TASK, records, SETTINGS, cache, data_dir=DATA_DIR, progress=False, needs=wanted)
    assert set(reduced.layers) | set(reduced.net) == set(wanted) | SIZE_STATS
    assert all(cache.holds(k) == set(wanted) | SIZE_STATS for k in keys)  # no "H", no "log_h_trace"

    monkeypatch.undo()  # the full pool needs the Hessian: an entry lacking it is probed again, with what it held
    full = pool.load_pool(TASK, records, SETTINGS, cache, data_dir=DATA_DIR, progress=False)
    assert set(full.layers) | set(full.net) == ALL_STATS
    assert all(cache.holds(k) == ALL_STATS for k in keys)
    fresh = StatsCache(tmp_path / "fresh")  # what a full run writes from an empty cache: the very same files
    pool.load_pool(TASK, records, SETTINGS, fresh, data_dir=DATA_DIR, progress=False)
    assert all(cache.path(k).read_bytes() == fresh.path(k).read_bytes() for k in keys)

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached entry holding every statistic asked for was probed again")
    monkeypatch.setattr(pool, "probe", no_probe)
    again = pool.load_pool(TASK, records, SETTINGS, cache, data_dir=DATA_DIR, progress=False, needs=wanted)
    assert again.digest() == reduced.digest()  # a full entry serves a reduced pool as its own entry did


@needs_data
def test_an_entry_rewritten_with_fewer_statistics_after_the_fill_is_probed_again(
        tmp_path: Path, records: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    cache = StatsCache(tmp_path)
    pool.load_pool(TASK, records[:1], SETTINGS, cache, data_dir=DATA_DIR, progress=False, needs=["A"])
    monkeypatch.setattr(pool, "fill_cache", lambda *args, **kwargs: pool.Filled({}, {}))  # as if another run raced
    batch_ = pool.load_pool(TASK, records[:1], SETTINGS, cache, data_dir=DATA_DIR, progress=False, needs=["G", "KS"])
    assert {"G", "KS"} <= set(batch_.layers)
    assert cache.holds(pool.network_key(TASK, records[0]["arch"], SETTINGS)) >= {"A", "G", "KS", "naswot"}


# ----------------------------------------------------------------------------- a run

@needs_data
@pytest.mark.slow
def test_a_tiny_evolution_without_the_hessian_runs_no_hessian_product(tmp_path: Path, no_hvp: None) -> None:
    text = tiny_config(pool_size=6, sample_size=5, population=16, generations=2, n_jobs=1)
    cfg = config.from_dict(tomllib.loads(text + f"statistics = {json.dumps(NO_HESSIAN)}\n"))
    state = evolve.run(cfg, tmp_path / "run", data_dir=str(DATA_DIR), cache_dir=str(tmp_path / "cache"),
                       echo=lambda line: None)
    assert state.next_generation == 3 and state.scored
    used = set().union(*(programs.statistics_of(programs.parse(t)) for t in [*state.population, *state.scored]))
    assert used and not used & HESSIAN_STATS
    cache = StatsCache(tmp_path / "cache")
    files = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 6
    assert all(not cache.holds(f.stem) & HESSIAN_STATS for f in files)
    written = json.loads((tmp_path / "run" / "config.json").read_text())["evolution"]["statistics"]
    assert written == list(_statistics(NO_HESSIAN))
