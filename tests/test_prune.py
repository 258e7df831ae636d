"""Pruning (`eznas.prune`, ``eznas prune``): hoists are well typed and smaller, the greedy path keeps
the best replacement, dead weight is pruned away, and the command exports what it picks."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import primitives
from eznas import config as config_mod
from eznas import gp
from eznas.cli import main
from eznas.fitness import Fitness, kendall_taus
from eznas.prune import Step, hoists, pick, pool_path, prune_path
from eznas.statsbatch import StatsBatch

from conftest import needs_data, tiny_config


def _hoisted(expr: str) -> set[str]:
    return {str(t) for t in hoists(gp.parse(expr))}


def test_hoists_put_each_subtree_of_the_same_type_in_a_nodes_place():
    assert _hoisted("n_add(log_params, n_mul(log_flops, naswot))") == {
        "log_params", "n_mul(log_flops, naswot)", "log_flops", "naswot",  # in the root's place
        "n_add(log_params, log_flops)", "n_add(log_params, naswot)",  # in n_mul's place
    }


def test_hoists_respect_types():
    # agg_max(log_numel) holds a per-layer value: the root may take only network-level subtrees
    assert _hoisted("n_add(agg_max(log_numel), log_params)") == {"agg_max(log_numel)", "log_params"}
    assert _hoisted("log_params") == set()
    tree = gp.parse("n_mul(logdet_sum(gram_linear(a_znorm(G))), n_sub(log_params, agg_max(l_relu(log_w_norm))))")
    for smaller in hoists(tree):
        assert len(smaller) < len(tree)
        assert str(gp.parse(str(smaller))) == str(smaller)  # well typed: the parser accepts it


def _fitness_of(values: dict[str, float]):
    """A score function: the sum of the terminals' values in a program (each terminal counted once)."""
    def score(tree) -> Fitness:
        names = {node.name for node in tree if node.arity == 0}
        value = sum(values.get(n, 0.0) for n in names)
        return Fitness(value, {"t": value}, True)
    return score


def test_the_path_takes_the_best_hoist_and_shrinks_to_one_node():
    path = prune_path(gp.parse("n_add(n_mul(log_flops, naswot), n_sub(log_params, log_grad_norm))"),
                      _fitness_of({"naswot": 0.5, "log_flops": 0.2, "log_params": 0.1, "log_grad_norm": -0.3}))
    sizes = [s.size for s in path]
    assert sizes[0] == 7 and sizes[-1] == 1 and sizes == sorted(sizes, reverse=True)
    # first step: dropping log_grad_norm is worth most (n_sub(..) -> log_params)
    assert path[1].expr == "n_add(n_mul(log_flops, naswot), log_params)" and path[1].fitness == pytest.approx(0.8)
    assert path[-1].expr == "naswot"


def test_pick_is_the_smallest_within_the_tolerance():
    path = [Step("a", 9, 0.70, {}), Step("b", 5, 0.695, {}), Step("c", 3, 0.68, {}), Step("d", 1, 0.5, {})]
    assert pick(path, 0.01).expr == "b"
    assert pick(path, 0.02).expr == "c"
    assert pick(path, 0.0).expr == "a"


def _batch(n: int = 24) -> StatsBatch:
    """Seeded statistics of ``n`` one-layer networks whose accuracy is their naswot."""
    g = torch.Generator().manual_seed(3)
    context = primitives.Layers.from_sizes([1] * n)
    layers = {t.name: torch.randn(n, generator=g) for t in primitives.TERMINALS if t.type is primitives.LScalar}
    layers["depth"] = context.depth.float()
    net = {t.name: torch.randn(n, generator=g) * 3 for t in primitives.TERMINALS if t.type is primitives.NScalar}
    return StatsBatch(layers=layers, net=net, seg=context.seg, accuracy=net["naswot"].double().numpy(),
                      task=np.array(["nb201:cifar10"] * n, dtype=object), index=np.arange(n))


def test_dead_weight_is_pruned_away():
    path = pool_path("n_mul(n_sub(n_add(naswot, log_grad_norm), log_grad_norm), n_sign(n_relu(n_two)))", _batch(),
                     "mean")
    assert path[0].fitness == pytest.approx(1.0)  # (naswot + g) - g, times 1, ranks as naswot does
    assert pick(path, 0.0).expr == "naswot"
    batch = _batch()
    bar = kendall_taus(batch.net["log_params"].double().numpy()[None, :], batch.accuracy)[0]
    relative = pool_path(path[0].expr, batch, "mean", ("log_params",))  # a run with tasks.relative_to
    assert [s.expr for s in relative] == [s.expr for s in path]
    assert [s.fitness for s in relative] == pytest.approx([s.fitness - bar for s in path])


@pytest.mark.slow
@needs_data
def test_prune_exports_its_pick(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("EZNAS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config_mod.from_dict(tomllib.loads(tiny_config(pool_size=8, n_jobs=1)), source="test")
    expr = "n_add(n_sub(n_add(log_params, log_grad_norm), log_grad_norm), n_mul(n_half, log_flops))"
    record = tmp_path / "best.json"
    record.write_text(json.dumps({"run": "r", "rank": 0, "expression": expr, "size": 9, "pool_fitness": 0.5,
                                  "pool_taus": {}, "config": cfg.to_dict(), "fitness_history": []}))
    assert main(["prune", str(record), "-o", str(tmp_path / "lean.py"), "--raw", "--tolerance", "0.5"]) == 0
    out = capsys.readouterr().out
    assert ">>>>" in out and "wrote" in out
    lean = json.loads((tmp_path / "lean.json").read_text())
    assert lean["pruned_from"]["expression"] == expr and lean["pruned_from"]["tolerance"] == 0.5
    assert lean["size"] < 9 and lean["config"] == cfg.to_dict()
    assert (tmp_path / "lean.py").read_text().startswith('"""Zero-cost proxy evolved by eznas, then pruned')
    spec = importlib.util.spec_from_file_location("lean", tmp_path / "lean.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.EXPRESSION == lean["expression"]
