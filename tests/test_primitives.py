"""Tests of the primitive library: completeness, closure, batching, known values, export."""

import ast
import inspect
import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import primitives
from primitives import (
    PRIMITIVES,
    TERMINALS,
    AMat,
    Gram,
    Layers,
    LScalar,
    NScalar,
    Primitive,
    WMat,
    by_name,
    source_of,
)
from primitives.source import _add_function, _Needs

R, C = 4, 6  # WMat rows, columns
N, F = 5, 7  # AMat samples, features; Gram is N x N
SHAPES = {WMat: (R, C), AMat: (N, F), Gram: (N, N), LScalar: (), NScalar: ()}
BIG = torch.tensor(1e30, dtype=torch.float32).item()
LAYOUTS = {
    "3 layers, 2 nets": [2, 1],
    "1 layer, 1 net": [1],
    "9 layers, 3 nets": [3, 4, 2],
}


def _constant(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """A different constant per matrix (or the same constant for scalar types)."""
    if len(shape) == 1:
        return torch.full(shape, 3.0)
    per_item = torch.randn(shape[0], 1, 1, generator=gen)
    return per_item.expand(shape)


def _rank_one(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Outer products u v^T per matrix (plain normal values for scalar types)."""
    if len(shape) == 1:
        return torch.randn(shape, generator=gen)
    u = torch.randn(shape[0], shape[1], 1, generator=gen)
    v = torch.randn(shape[0], 1, shape[2], generator=gen)
    return u * v


def _signs(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Random +-1."""
    return torch.randint(0, 2, shape, generator=gen).float().mul_(2).sub_(1)


MAX_FLOAT = torch.finfo(torch.float32).max
KINDS: dict[str, Callable[[tuple[int, ...], torch.Generator], torch.Tensor]] = {
    "zeros": lambda s, g: torch.zeros(s),
    "negative": lambda s, g: -(torch.rand(s, generator=g) + 0.1),
    "plus_1e30": lambda s, g: torch.full(s, 1e30),
    "minus_1e30": lambda s, g: torch.full(s, -1e30),
    "mixed_1e30": lambda s, g: _signs(s, g) * 1e30,
    "float_max": lambda s, g: _signs(s, g) * MAX_FLOAT,
    "tiny": lambda s, g: torch.randn(s, generator=g) * 1e-30,
    "constant": _constant,
    "rank_one": _rank_one,
    "normal": lambda s, g: torch.randn(s, generator=g),
}


def make(ptype: type, kind: str, layers: Layers, seed: int = 0) -> torch.Tensor:
    """A float32 input of type `ptype` for the pool described by `layers`."""
    lead = layers.n_nets if ptype is NScalar else len(layers.seg)
    gen = torch.Generator().manual_seed(seed)
    return KINDS[kind]((lead, *SHAPES[ptype]), gen).to(torch.float32).contiguous()


def call(prim: Primitive, args: list[torch.Tensor], layers: Layers) -> torch.Tensor:
    """Call a primitive the way the fitness evaluator does."""
    return prim.func(*args, layers) if prim.aggregator else prim.func(*args)


def expected_shape(prim: Primitive, layers: Layers) -> tuple[int, ...]:
    """Declared output shape of `prim` on the pool."""
    lead = layers.n_nets if prim.ret_type is NScalar else len(layers.seg)
    return (lead, *SHAPES[prim.ret_type])


IDS = [p.name for p in PRIMITIVES]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from threads, and a busy machine makes thread hand-offs slow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- completeness


def test_names_unique_identifiers_and_disjoint_from_terminals():
    names = [p.name for p in PRIMITIVES]
    terminal_names = [t.name for t in TERMINALS]
    assert len(names) == len(set(names))
    assert len(terminal_names) == len(set(terminal_names))
    assert not set(names) & set(terminal_names)
    assert all(name.isidentifier() for name in names + terminal_names)


def test_terminals_are_exactly_the_contract():
    assert {(t.name, t.type) for t in TERMINALS} == {
        ("W", WMat), ("dW", WMat), ("H", WMat), ("A", AMat), ("G", AMat),
        ("log_numel", LScalar), ("log_fan_in", LScalar), ("log_fan_out", LScalar),
        ("depth", LScalar), ("log_w_norm", LScalar), ("log_dw_norm", LScalar),
        ("log_snip", LScalar), ("log_h_trace", LScalar), ("log_chan_rank", LScalar),
        ("log_params", NScalar), ("log_flops", NScalar), ("log_layers", NScalar),
        ("log_grad_norm", NScalar), ("log_snip_total", NScalar), ("naswot", NScalar), ("rcor", NScalar),
        ("log_chan_rank_sum", NScalar),
        ("KA", Gram), ("KG", Gram), ("KS", Gram),
    }
    assert all(t.doc for t in TERMINALS)


def test_at_least_30_distinct_operations():
    assert len({p.func for p in PRIMITIVES}) >= 30


@pytest.mark.parametrize("ptype", [WMat, AMat, Gram, LScalar])
def test_every_type_is_produced_and_consumed(ptype):
    assert any(p.ret_type is ptype for p in PRIMITIVES)
    assert any(ptype in p.in_types for p in PRIMITIVES)


def test_every_type_reachable_from_terminals():
    reached = {t.type for t in TERMINALS}
    grew = True
    while grew:
        new = {p.ret_type for p in PRIMITIVES if set(p.in_types) <= reached}
        grew = not new <= reached
        reached |= new
    assert reached == {WMat, AMat, Gram, LScalar, NScalar}


@pytest.mark.parametrize("prim", PRIMITIVES, ids=IDS)
def test_row_matches_function(prim):
    params = list(inspect.signature(prim.func).parameters)
    assert len(params) == len(prim.in_types) + prim.aggregator
    if prim.aggregator:
        assert params[-1] == "layers"
        assert prim.in_types[0] in (LScalar, Gram) and prim.ret_type in (NScalar, LScalar)
    assert all(t in SHAPES for t in (*prim.in_types, prim.ret_type))
    doc = inspect.getdoc(prim.func)
    assert doc and "\n" not in doc and "->" in doc
    assert prim.doc
    assert by_name(prim.name) is prim


def test_by_name_unknown_names_the_table():
    with pytest.raises(KeyError, match="PRIMITIVES"):
        by_name("no_such_op")


def test_package_does_not_import_eznas():
    for path in Path(primitives.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "eznas" for a in node.names), path
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] != "eznas", path


# ---------------------------------------------------------------- closure


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("prim", PRIMITIVES, ids=IDS)
def test_closure_finite_output_of_declared_shape(prim, layout):
    layers = Layers.from_sizes(layout)
    for kinds in itertools.product(KINDS, repeat=len(prim.in_types)):
        args = [make(t, k, layers, seed=i) for i, (t, k) in enumerate(zip(prim.in_types, kinds))]
        before = [a.clone() for a in args]
        out = call(prim, args, layers)
        assert out.dtype == torch.float32, kinds
        assert tuple(out.shape) == expected_shape(prim, layers), kinds
        assert torch.isfinite(out).all(), (kinds, out)
        assert out.abs().max() <= max([BIG] + [a.abs().max().item() for a in args]), kinds
        assert all(torch.equal(a, b) for a, b in zip(args, before)), f"{kinds}: input modified"


# ---------------------------------------------------------------- batched == loop


def _single_net(layers: Layers, b: int) -> tuple[torch.Tensor, Layers]:
    """Mask of network b's layers and the layout of that network alone."""
    mask = layers.seg == b
    alone = Layers(torch.zeros(int(mask.sum()), dtype=torch.long), 1, layers.depth[mask])
    return mask, alone


@pytest.mark.parametrize("kind", ["normal", "constant", "negative"])
@pytest.mark.parametrize("prim", PRIMITIVES, ids=IDS)
def test_batched_equals_loop(prim, kind):
    layers = Layers.from_sizes(LAYOUTS["9 layers, 3 nets"])
    args = [make(t, kind, layers, seed=i) for i, t in enumerate(prim.in_types)]
    out = call(prim, args, layers)
    if prim.aggregator:
        for b in range(layers.n_nets):
            mask, alone = _single_net(layers, b)
            one = call(prim, [a[mask] for a in args], alone)
            expected = out[b : b + 1] if prim.ret_type is NScalar else out[mask]
            torch.testing.assert_close(one, expected, rtol=1e-5, atol=1e-5)
    else:
        for i in range(out.shape[0]):
            one = call(prim, [a[i : i + 1] for a in args], layers)
            torch.testing.assert_close(one, out[i : i + 1], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- known values


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Seeded standard normal tensor."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_corr_equals_numpy_corrcoef_of_rows():
    x = _rand(3, N, F)
    got = by_name("corr").func(x)
    for i in range(3):
        np.testing.assert_allclose(got[i].numpy(), np.corrcoef(x[i].numpy()), atol=1e-5)


def test_corr_of_constant_row_is_zero_off_diagonal():
    x = _rand(1, N, F)
    x[0, 2] = 7.0
    got = by_name("corr").func(x)[0]
    assert torch.equal(got[2], torch.eye(N)[2]) and torch.equal(got[:, 2], torch.eye(N)[2])


def test_gram_sign_counts_agreeing_features():
    x = torch.tensor([[[1.0, 2.0, -1.0, 0.0], [3.0, -1.0, -2.0, 0.0]]])
    expected = torch.tensor([[[1.0, 0.75], [0.75, 1.0]]])
    torch.testing.assert_close(by_name("gram_sign").func(x), expected)


def test_gram_linear_is_x_xt_over_f():
    x = _rand(2, N, F)
    torch.testing.assert_close(by_name("gram_linear").func(x), x @ x.mT / F)


def _spd(count: int, seed: int = 0) -> torch.Tensor:
    """Well-conditioned symmetric positive definite matrices [count, N, N]."""
    b = _rand(count, N, N, seed=seed)
    return b @ b.mT + N * torch.eye(N)


def test_logdet_equals_numpy_slogdet():
    m = _spd(4)
    expected = np.linalg.slogdet(m.double().numpy())[1]
    np.testing.assert_allclose(by_name("logdet").func(m).numpy(), expected, rtol=1e-5)


def test_logdet_of_zero_matrix_is_ridge():
    got = by_name("logdet").func(torch.zeros(1, N, N))
    torch.testing.assert_close(got, torch.tensor([N * np.log(1e-6)], dtype=torch.float32))


def test_logdet_sum_equals_manual_per_network_sum():
    layers = Layers.from_sizes([2, 1, 3])
    grams = _spd(6, seed=1)
    got = by_name("logdet_sum").func(grams, layers)
    sums = [grams[0:2].sum(0), grams[2:3].sum(0), grams[3:6].sum(0)]
    expected = [np.linalg.slogdet(s.double().numpy())[1] for s in sums]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_rcor_expression_composes():
    layers = Layers.from_sizes([2, 1])
    a, g = _rand(3, N, F, seed=1), _rand(3, N, F, seed=2)
    corr, gabs, gadd = (by_name(n).func for n in ("corr", "gram_abs", "gram_add"))
    got = by_name("logdet_sum").func(gadd(gabs(corr(a)), gabs(corr(g))), layers)
    assert got.shape == (2,) and torch.isfinite(got).all()


def test_eig_ratio_equals_numpy_condition_number():
    m = _spd(3)
    eig = np.linalg.eigvalsh(m.double().numpy())
    scale = m.abs().amax(dim=(-2, -1)).double().numpy()[:, None]
    eig = eig / scale
    expected = np.log(eig.max(-1) + 1e-6) - np.log(eig.min(-1) + 1e-6)
    np.testing.assert_allclose(by_name("eig_ratio").func(m).numpy(), expected, rtol=1e-4)


def test_eig_ratio_falls_back_to_singular_values(monkeypatch):
    m = _rand(3, N, N)
    expected = by_name("eig_ratio").func(m)

    def fail(_: torch.Tensor) -> torch.Tensor:
        raise torch.linalg.LinAlgError("did not converge")

    monkeypatch.setattr(torch.linalg, "eigvalsh", fail)
    torch.testing.assert_close(by_name("eig_ratio").func(m), expected, rtol=1e-4, atol=1e-4)


def test_scale_guards_keep_values_near_1e30():
    x = _rand(3, N, F)
    torch.testing.assert_close(by_name("corr").func(x * 1e28), by_name("corr").func(x))
    torch.testing.assert_close(by_name("a_znorm").func(x * 1e28), by_name("a_znorm").func(x))
    m = _spd(3)
    torch.testing.assert_close(by_name("eig_ratio").func(m * 1e28), by_name("eig_ratio").func(m))
    shifted = by_name("logdet").func(m) + N * np.log(1e20)
    torch.testing.assert_close(by_name("logdet").func(m * 1e20), shifted)


def test_div_safe_zero_denominator_is_numerator_sign():
    x = torch.tensor([2.0, -3.0, 0.0, 1.0])
    y = torch.tensor([0.0, 0.0, 0.0, 4.0])
    assert torch.equal(by_name("l_div_safe").func(x, y), torch.tensor([1.0, -1.0, 0.0, 0.25]))


def test_log_abs_and_exp_clamped_bounds():
    assert by_name("l_log_abs").func(torch.zeros(1)).item() == pytest.approx(np.log(1e-8))
    assert by_name("l_exp_clamped").func(torch.tensor([1e4])).item() == pytest.approx(1e30, 1e-5)


def test_znorm_standardises_each_matrix():
    z = by_name("a_znorm").func(_rand(3, N, F) * 5 + 2)
    torch.testing.assert_close(z.mean(dim=(-2, -1)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(-2, -1), correction=0), torch.ones(3))


def test_aggregators_known_values():
    layers = Layers.from_sizes([2, 1])  # depths 0, 1 | 0
    x = torch.tensor([1.0, 2.0, 4.0])
    expected = {
        "agg_mean": [1.5, 4.0], "agg_sum": [3.0, 4.0], "agg_max": [2.0, 4.0],
        "agg_min": [1.0, 4.0], "agg_std": [0.5, 0.0], "agg_depth_mean": [2.0, 4.0],
    }
    for name, values in expected.items():
        assert by_name(name).func(x, layers).tolist() == values, name


def test_layer_delta_restarts_at_each_network():
    layers = Layers.from_sizes([3, 2])
    x = torch.tensor([1.0, 4.0, 2.0, 10.0, 7.0])
    assert by_name("l_delta").func(x, layers).tolist() == [0.0, 3.0, -2.0, 0.0, -3.0]


def test_eig_entropy_isotropic_vs_rank_one():
    entropy = by_name("eig_entropy").func
    eye = torch.eye(N).expand(2, N, N).clone()
    eye[1] *= 7.0  # scale does not matter
    torch.testing.assert_close(entropy(eye), torch.full((2,), np.log(N), dtype=torch.float32))
    v = _rand(1, N, 1)
    assert entropy(v @ v.mT).item() == pytest.approx(0.0, abs=1e-4)
    assert entropy(torch.zeros(1, N, N)).item() == 0.0


def test_layers_from_sizes_and_validation():
    layers = Layers.from_sizes([3, 1])
    assert layers.seg.tolist() == [0, 0, 0, 1] and layers.n_nets == 2
    assert layers.depth.tolist() == [0.0, 0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="seg"):
        Layers(torch.zeros(2), 1, torch.zeros(2))
    with pytest.raises(ValueError, match="depth"):
        Layers(torch.zeros(2, dtype=torch.long), 1, torch.zeros(3))


# ---------------------------------------------------------------- export source


def _exec(source: str) -> dict:
    """Run exported source in a fresh namespace and return it."""
    namespace: dict = {"__name__": "exported_proxy"}
    exec(compile(source, "<exported>", "exec"), namespace)
    return namespace


def test_source_of_all_primitives_round_trips():
    namespace = _exec(source_of(p.name for p in PRIMITIVES))
    for prim in PRIMITIVES:
        for kind in ("normal", "rank_one", "mixed_1e30"):
            layers = namespace["Layers"].from_sizes([3, 1, 2])
            args = [make(t, kind, layers, seed=i) for i, t in enumerate(prim.in_types)]
            emitted = call(replace(prim, func=namespace[prim.name]), args, layers)
            assert torch.equal(call(prim, args, layers), emitted), (prim.name, kind)


def test_source_imports_only_torch_math_and_stdlib():
    tree = ast.parse(source_of(p.name for p in PRIMITIVES))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"torch", "math", "dataclasses"}


def test_source_of_is_minimal():
    plain = source_of(["l_abs"])
    assert plain.startswith("import torch") and "class Layers" not in plain
    assert "def absolute" in plain and "l_abs = absolute" in plain and "def square" not in plain
    aggregated = source_of(["logdet_sum"])
    assert "class Layers" in aggregated and "def logdet(" in aggregated
    assert "def _seg_sum" in aggregated and "RIDGE = " in aggregated


def test_source_of_unknown_name_says_which_table():
    with pytest.raises(KeyError, match="primitives.registry.PRIMITIVES"):
        source_of(["w_abs", "no_such_op"])


def _uses_numpy(x: torch.Tensor) -> torch.Tensor:
    """A function exported code could not define (it needs numpy)."""
    return torch.as_tensor(np.abs(x.numpy()))


def test_source_refuses_functions_needing_other_modules():
    with pytest.raises(TypeError, match="use only torch, math"):
        _add_function(_uses_numpy, _Needs())
