"""Simplification with sympy: exact identities only where the primitives' protection allows them,
formulas that score as the engine does (random programs on a synthetic float64 batch, the
published proxies on real NB201 statistics), pool facts flagged as such, printers and errors."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import sympy as sp
import torch
from deap import gp as dgp

import primitives
from eznas import benchmarks, gp
from eznas import simplify as simplify_module
from eznas.cache import ENV_VAR, StatsCache
from eznas.probe import ProbeSettings
from eznas.errors import EznasError
from eznas.fitness import Evaluator
from eznas.pool import load_pool
from eznas.formula import size, to_sympy
from eznas.simplify import simplify, verified
from eznas.statsbatch import StatsBatch

from conftest import needs_data, published_expression

PROXIES = {name: published_expression(name) for name in ("eznas_best", "eznas_best_v6", "eznas_nb201")}
SHAPES = {primitives.WMat: (6, 5), primitives.AMat: (8, 7), primitives.Gram: (8, 8)}


def _synthetic(net: dict[str, list[float]] | None = None, sizes: tuple[int, ...] = (3, 5, 2, 4, 6, 3)) -> StatsBatch:
    """Seeded float64 statistics of ``len(sizes)`` networks; ``net`` overrides network scalars."""
    g = torch.Generator().manual_seed(0)
    context = primitives.Layers.from_sizes(list(sizes))
    n_layers, n_nets = len(context.seg), len(sizes)
    layers, nets = {}, {}
    for t in primitives.TERMINALS:
        if t.type is primitives.NScalar:
            nets[t.name] = torch.randn(n_nets, generator=g, dtype=torch.float64) * 3
        elif t.type is primitives.LScalar:
            layers[t.name] = torch.randn(n_layers, generator=g, dtype=torch.float64) * 3
        else:
            layers[t.name] = torch.randn(n_layers, *SHAPES[t.type], generator=g, dtype=torch.float64)
    layers["depth"] = context.depth.double()
    nets.update({k: torch.tensor(v, dtype=torch.float64) for k, v in (net or {}).items()})
    return StatsBatch(layers=layers, net=nets, seg=context.seg, accuracy=np.arange(n_nets, dtype=float),
                      task=np.array(["synthetic"] * n_nets, dtype=object), index=np.arange(n_nets))


class _Float64Evaluator(Evaluator):
    """The engine on a float64 batch with its named constants in float64 too (the engine makes
    them float32 whatever the batch), so that only float64 rounding separates it from a formula."""

    def _terminal(self, name: str) -> torch.Tensor:
        return super()._terminal(name).double()


def _saturates(evaluator: Evaluator, tree: dgp.PrimitiveTree) -> bool:
    """Whether some subtree reaches the primitives' +-1e30 clamp, where arithmetic stops being exact."""
    return any(float(evaluator.scores(dgp.PrimitiveTree(tree[tree.searchSubtree(i)])).abs().max()) >= 1e29
               for i in range(len(tree)))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (many small tensors), as it was afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_random_programs_keep_their_value_on_a_synthetic_batch(monkeypatch, one_thread):
    monkeypatch.setattr(simplify_module, "Evaluator", _Float64Evaluator)
    batch = _synthetic()
    evaluator = _Float64Evaluator(batch)
    rng = random.Random(0)
    seen, checked = set(), 0
    for _ in range(250):
        tree = gp.generate(gp.ROOT_TYPE, 2, rng.randint(2, 7), rng.choice(("grow", "full")), rng)
        scores = evaluator.scores(tree)
        if bool((scores == scores[0]).all()) or _saturates(evaluator, tree):  # constant: worst fitness
            continue
        exact = verified(tree, batch, pool_facts=False)
        assert exact.simplified and exact.exact, str(tree)
        assert exact.size <= len(tree), str(tree)
        assert size(to_sympy(tree, evaluate=False)) <= len(tree), str(tree)
        assert verified(tree, batch).simplified, str(tree)
        seen.update(node.name for node in tree if isinstance(node, dgp.Primitive))
        checked += 1
    assert checked >= 180
    assert seen == {p.name for p in primitives.PRIMITIVES}


def test_cancelled_terms_disappear():
    result = simplify("n_sub(n_add(naswot, log_grad_norm), log_grad_norm)")
    assert result.sympy == sp.Symbol("naswot", real=True)
    assert (result.text, result.size, result.exact) == ("naswot", 1, True)
    assert simplify("n_mul(n_sub(log_params, log_params), rcor)").text == "0"
    assert simplify("n_neg(n_neg(log_params))").text == "log_params"
    assert simplify("agg_mean(l_sub(log_numel, log_numel))").text == "0"


def test_div_safe_stays_protected_unless_the_divisor_is_a_safe_number():
    assert simplify("n_div_safe(naswot, log_params)").text == "div_safe(naswot, log_params)"
    assert simplify("n_div_safe(log_params, log_params)").text == "div_safe(log_params, log_params)"
    assert simplify("n_div_safe(naswot, n_two)").text == "naswot/2"
    # log_params = 0 on the first network: the protected branch gives sign(0) = 0, not 1
    zero = _synthetic({"log_params": [0.0, 1.0, 2.0, -3.0, 1e-9, 5.0]})
    kept = verified("n_div_safe(log_params, log_params)", zero)
    assert (kept.text, kept.simplified) == ("div_safe(log_params, log_params)", True)
    away = _synthetic({"log_params": [0.5, 1.0, 2.0, -3.0, 4.0, 5.0]})
    assert verified("n_div_safe(naswot, log_params)", away).exact  # as small as naswot/log_params: exact wins
    pooled = verified("n_mul(n_div_safe(naswot, log_params), log_params)", away)
    assert (pooled.text, pooled.exact) == ("naswot", False)
    assert not verified("n_mul(n_div_safe(naswot, log_params), log_params)", zero).text == "naswot"


def test_log_abs_of_exp_is_not_the_identity_under_clamping():
    program = "n_log_abs(n_exp_clamped(log_params))"
    result = simplify(program)
    assert result.text == "log(exp_clamped(log_params) + eps)"
    assert result.size == 3
    # underflow towards log(eps) = -18.4 and the clamp at log(1e30) = 69.1 both reproduce
    extreme = _synthetic({"log_params": [-50.0, -1.0, 0.0, 3.0, 80.0, 200.0]})
    checked = verified(program, extreme)
    assert checked.simplified and checked.exact
    assert simplify("n_log_abs(n_neg(log_params))").text == "log_abs(log_params)"


def test_pool_facts_are_flagged():
    program = "n_mul(n_sign(n_relu(log_chan_rank_sum)), naswot)"
    assert simplify(program).text == "naswot*sign(relu(log_chan_rank_sum))"
    positive = _synthetic({"log_chan_rank_sum": [1.5, 2.0, 3.0, 1.42, 9.0, 4.0]})
    pooled = verified(program, positive)
    assert (pooled.text, pooled.size, pooled.exact, pooled.simplified) == ("naswot", 1, False, True)
    mixed = _synthetic({"log_chan_rank_sum": [1.5, -1.0, 3.0, 1.42, 9.0, 4.0]})
    assert verified(program, mixed).exact
    non_negative = _synthetic({"log_chan_rank_sum": [1.5, 0.0, 3.0, 1.42, 9.0, 4.0]})
    assert (verified(program, non_negative).text, verified(program, non_negative).exact) == (
        "naswot*sign(log_chan_rank_sum)", False)


def test_a_form_that_scores_differently_falls_back_to_the_program():
    program = "n_sub(n_mul(n_exp_clamped(naswot), n_two), n_exp_clamped(naswot))"
    assert simplify(program).text == "exp_clamped(naswot)"
    saturated = _synthetic({"naswot": [100.0, 1.0, 2.0, 3.0, 4.0, 5.0]})  # 2 * 1e30 clamps to 1e30
    result = verified(program, saturated)
    assert not result.simplified
    assert result.size == len(gp.parse(program)) == 7
    assert result.text == "exp_clamped(naswot)*2 - exp_clamped(naswot)"


def test_printers():
    result = simplify("n_mul(logdet_sum(gram_mul(gram_add(KA, KS), gram_abs(KG))), n_relu(n_sub(log_params, naswot)))")
    assert result.text == "logdet_sum((KA + KS) * abs(KG))*relu(log_params - naswot)"
    assert result.latex == (r"\operatorname{logdet\_sum}\left(\left(\mathrm{KA} + \mathrm{KS}\right) \odot "
                            r"\operatorname{abs}\left(\mathrm{KG}\right)\right) \cdot "
                            r"\operatorname{relu}\left(\mathrm{log\_params} - \mathrm{naswot}\right)")
    for program in PROXIES.values():
        latex = simplify(program).latex
        assert latex and latex.count("{") == latex.count("}") and latex.count(r"\left") == latex.count(r"\right")


def test_sizes_count_program_nodes():
    for program in PROXIES.values():
        assert size(to_sympy(program, evaluate=False)) == len(gp.parse(program))
    assert [simplify(PROXIES[name]).size for name in ("eznas_best", "eznas_best_v6", "eznas_nb201")] == [36, 55, 29]
    assert simplify("n_square(n_square(n_exp_clamped(naswot)))").size == 4  # exp_clamped(naswot)**4
    assert simplify("n_sqrt_abs(n_sub(naswot, rcor))").size == 4
    assert simplify("n_div_safe(n_one, n_two)").size == 1
    both = "n_add(n_sub(log_params, log_grad_norm), n_sub(n_add(log_flops, naswot), n_sqrt_abs(naswot)))"
    assert size(to_sympy(both, evaluate=False)) == 10  # two sums either sign suits: no negation needed
    assert size(to_sympy("n_sub(n_neg(log_params), naswot)")) == 4  # -(log_params + naswot)


def test_unknown_primitives_and_malformed_programs_are_errors():
    for bad in ("n_frobnicate(naswot)", "n_add(naswot)", "agg_mean(naswot)"):
        with pytest.raises(EznasError):
            simplify(bad)
        with pytest.raises(EznasError):
            verified(bad, _synthetic())


@pytest.fixture(scope="module")
def nb201_pool(tmp_path_factory) -> StatsBatch:
    """10 NB201 CIFAR-10 networks at the default probe settings (those of the published proxies),
    cached under $EZNAS_CACHE_DIR when set, else in a temporary directory."""
    cache = StatsCache() if os.environ.get(ENV_VAR) else StatsCache(tmp_path_factory.mktemp("stats"))
    records = benchmarks.sample("nb201:cifar10", 10, 5)
    return load_pool("nb201:cifar10", records, ProbeSettings(), cache, progress=False)


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("name", sorted(PROXIES))
def test_published_proxies_simplify_and_verify(name, nb201_pool):
    program = PROXIES[name]
    exact = simplify(program)
    assert exact.size < len(gp.parse(program))
    result = verified(program, nb201_pool)
    assert result.simplified and result.size <= exact.size
    assert verified(program, nb201_pool, pool_facts=False).sympy == exact.sympy
    if name == "eznas_best_v6":  # sign(relu(R)) is 1 where R > 0: a pool fact
        assert "naswot + log_grad_norm" not in exact.text and "sign(relu(" in exact.text
        assert "sign(" not in result.text and not result.exact
