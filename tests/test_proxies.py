"""Tests for `eznas.proxies`: the registry, nets left untouched, known values, AZ-NAS rank
aggregation, and a peer check against alethiometer (synflow, snip, grad_norm and grasp equal to
its values on 10 NB201 networks; NASWOT and ZiCo differences documented)."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import nn

from eznas import benchmarks, inputs, proxies
from eznas.proxies import az_nas, registry
from eznas.spaces import build_network

PEER_TASK = "nb201:ImageNet16-120"  # NB201 networks on 16x16 inputs: the cheapest NB201 layout
PEER_NETS = 10  # all four checked proxies are deterministic: equality per network, no rank statistics needed
PEER_BATCH = 16  # the same 16 real images for both implementations


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


class Small(nn.Module):
    """Conv, BN, ReLU, dropout, a global average pool and a Linear: every kind of state a proxy could touch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.cells = nn.Sequential(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()),
        )
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.cells(self.stem(x))).flatten(1)))


def small_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return Small(), torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))


# ----------------------------------------------------------------------------- registry

def test_registry_rejects_a_duplicate_name_and_keeps_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    original = proxies.get("snip")
    with pytest.raises(ValueError, match="'snip' is already registered"):
        registry.proxy("snip")(lambda net, x, y: 0.0)
    assert proxies.get("snip") is original

    @registry.proxy("test_only_constant")
    def constant(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """A constant (test only, 2024)."""
        return 1.0

    assert proxies.get("test_only_constant")(*small_case()) == 1.0
    with pytest.raises(ValueError, match="already registered"):
        registry.proxy("test_only_constant")(constant)


def test_every_baseline_is_registered_with_a_citing_one_line_docstring() -> None:
    assert proxies.names() == ["params", "flops", "grad_norm", "snip", "grasp", "fisher", "synflow", "zico",
                               "jacob_cov", "naswot", "zen", "eznas_a", "az_nas"]
    for name in proxies.names():
        doc = proxies.get(name).doc
        assert re.search(r"(19|20)\d\d", doc), f"{name}: the docstring's first line cites no paper: {doc!r}"
    assert [n for n in proxies.names() if proxies.get(n).set_level] == ["az_nas"]


def test_unknown_baseline_is_a_one_line_error() -> None:
    from eznas.errors import EznasError

    with pytest.raises(EznasError, match="unknown baseline proxy 'snipp'; known: params") as info:
        proxies.get("snipp")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- nets untouched

def _snapshot(net: nn.Module) -> dict:
    return {
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "modes": [m.training for m in net.modules()],
        "flags": [p.requires_grad for p in net.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in net.parameters()],
        "dtypes": [p.dtype for p in net.parameters()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in net.modules()],
        "children": [type(m).__name__ for m in net.modules()],
    }


def _assert_same(before: dict, after: dict, name: str) -> None:
    assert before["state"].keys() == after["state"].keys(), name
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{name} changed {key}"
    for field in ("modes", "flags", "dtypes", "hooks", "children"):
        assert before[field] == after[field], f"{name} changed {field}"
    for g0, g1 in zip(before["grads"], after["grads"]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1), f"{name} changed a .grad"


@pytest.mark.parametrize("name", proxies.names())
def test_baseline_leaves_the_net_untouched_and_is_deterministic(name: str) -> None:
    net, x, y = small_case()
    net.eval()  # an unusual mode, a frozen layer and a stored gradient: all must survive
    net.fc.bias.requires_grad_(False)
    net.stem[0].weight.grad = torch.ones_like(net.stem[0].weight)
    before = _snapshot(net)
    rng_state = torch.get_rng_state()
    first = proxies.get(name)(net, x, y)
    _assert_same(before, _snapshot(net), name)
    assert torch.equal(rng_state, torch.get_rng_state()), f"{name} drew from the global RNG"
    second = proxies.get(name)(net, x, y)
    assert first == second
    if proxies.get(name).set_level:
        assert set(first) == set(az_nas.COMPONENTS)
    else:
        assert isinstance(first, float) and math.isfinite(first)


# ----------------------------------------------------------------------------- known values

def test_synflow_of_a_linear_chain_is_depth_times_the_path_sum() -> None:
    """Without norms or biases R = 1^T |W3||W2||W1| 1 is homogeneous of degree 1 in each layer, so
    sum_W W * dR/dW = 3 R."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=False), nn.BatchNorm1d(7), nn.Linear(7, 5, bias=False),
                        nn.Linear(5, 3, bias=False))
    x = torch.randn(4, 3, 2, 2)
    path = torch.ones(1, 12, dtype=torch.float64)
    for layer in (net[1], net[3], net[4]):
        path = path @ layer.weight.detach().double().abs().T
    score = proxies.get("synflow")(net, x, torch.zeros(4, dtype=torch.long))
    assert score == pytest.approx(3 * float(path.sum()), rel=1e-12)


def test_snip_grad_norm_and_flops_match_hand_computation() -> None:
    net, x, y = small_case()
    work = registry.probe_mode_copy(net)
    weights = [m.weight for m in work.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grads = torch.autograd.grad(F.cross_entropy(work(x), y), weights)
    weights = [w.detach() for w in weights]
    saliency = sum((w * g).abs().sum() for w, g in zip(weights, grads))
    assert proxies.get("snip")(net, x, y) == pytest.approx(float(saliency), rel=1e-6)
    assert proxies.get("grad_norm")(net, x, y) == pytest.approx(float(sum(g.norm() for g in grads)), rel=1e-6)
    macs = 8 * 8 * 8 * 27 + 8 * 8 * 8 * 72 + 16 * 4 * 4 * 72 + 10 * 16
    assert proxies.get("flops")(net, x, y) == macs
    assert proxies.get("params")(net, x, y) == sum(p.numel() for p in net.parameters())


def test_eznas_a_reading_on_a_single_conv() -> None:
    """One conv on 2x2 inputs: the score is ||sigmoid(log|det sign(dL/dX)|)||_F over the [N, C] maps."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Flatten(), nn.Linear(12, 4))
    x, y = torch.randn(5, 2, 2, 2), torch.randint(0, 4, (5,))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xg), y), xg)
    expected = torch.sigmoid(torch.linalg.slogdet(torch.sign(g).double()).logabsdet).norm()
    assert proxies.get("eznas_a")(net, x, y) == pytest.approx(float(expected), rel=1e-12)


def test_eznas_a_skips_conv_inputs_that_are_not_square() -> None:
    """A factorised 1x3 / 3x1 pair after a stride (NASNet, Amoeba, PNAS): the second conv sees 4x2
    maps, which have no determinant, so only the first conv counts."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 3, (1, 3), stride=(1, 2), padding=(0, 1)), nn.Conv2d(3, 3, (3, 1), padding=(1, 0)),
                        nn.Flatten(), nn.Linear(24, 4))
    x, y = torch.randn(5, 2, 4, 4), torch.randint(0, 4, (5,))
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(net(xg), y), xg)
    expected = torch.sigmoid(torch.linalg.slogdet(torch.sign(g).double()).logabsdet).norm()
    assert proxies.get("eznas_a")(net, x, y) == pytest.approx(float(expected), rel=1e-12)


def test_az_nas_rank_aggregation_sums_log_relative_ranks() -> None:
    values = [
        {"expressivity": 1.0, "progressivity": 0.5, "trainability": -1.0, "complexity": 10.0},
        {"expressivity": 3.0, "progressivity": float("nan"), "trainability": -float("inf"), "complexity": 30.0},
        {"expressivity": 2.0, "progressivity": 0.1, "trainability": -0.5, "complexity": 30.0},
    ]
    scores = proxies.get("az_nas").score_set(values)
    expected = [
        math.log(1 / 3) + math.log(3 / 3) + math.log(2 / 3) + math.log(1 / 3),
        math.log(3 / 3) + math.log(1 / 3) + math.log(1 / 3) + math.log(2.5 / 3),  # NaN ranks lowest; ties averaged
        math.log(2 / 3) + math.log(2 / 3) + math.log(3 / 3) + math.log(2.5 / 3),
    ]
    assert scores == pytest.approx(expected)


def test_az_nas_blocks_follow_the_network_layout(data_dir: Path) -> None:
    net = build_network("nb201:cifar10", benchmarks.arch_string(0, data_dir))
    assert len(az_nas.blocks(net)) == 1 + 17  # stem, 15 cells and 2 reduction blocks
    batch = inputs.batch("nb201:cifar10", 8, 0, data_dir=data_dir)
    values = proxies.get("az_nas")(net, *batch)
    assert values["complexity"] == proxies.get("flops")(net, *batch)
    assert math.isfinite(values["expressivity"]) and math.isfinite(values["progressivity"])


# ----------------------------------------------------------------------------- peer check

@pytest.fixture(scope="module")
def peer() -> types.ModuleType:
    """alethiometer's metric registry, loaded by file path so that its package ``__init__``
    (which imports torchvision and PIL for dataset loaders) never runs."""
    spec = importlib.util.find_spec("alethiometer")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("alethiometer is not installed (make install adds it with --no-deps)")
    root = Path(spec.submodule_search_locations[0])
    saved = {k: v for k, v in sys.modules.items() if k == "alethiometer" or k.startswith("alethiometer.")}
    package = types.ModuleType("alethiometer")
    package.__path__ = [str(root)]
    sys.modules["alethiometer"] = package

    def load(name: str, path: Path, search: list[str] | None = None) -> types.ModuleType:
        s = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
        module = importlib.util.module_from_spec(s)
        sys.modules[name] = module
        s.loader.exec_module(module)
        return module

    try:
        load("alethiometer.utils", root / "utils.py")
        metrics = load("alethiometer.zero_cost_metrics", root / "zero_cost_metrics" / "__init__.py",
                       [str(root / "zero_cost_metrics")])
        metrics.gc = types.SimpleNamespace(collect=lambda: 0)  # it collects garbage after every metric: slow
        yield load("alethiometer.zc_proxy", root / "zc_proxy.py")
    finally:
        for key in [k for k in sys.modules if k == "alethiometer" or k.startswith("alethiometer.")]:
            del sys.modules[key]
        sys.modules.update(saved)


def _peer_values(peer: types.ModuleType, metrics: list[str], arch: str, x: torch.Tensor, y: torch.Tensor) -> dict:
    net = build_network(PEER_TASK, arch)  # a fresh net: the peer moves it and changes its mode
    return peer.calc_zc_metrics(metrics, net, [(x, y)], torch.device("cpu"), F.cross_entropy)


@pytest.fixture(scope="module")
def peer_table(peer: types.ModuleType, data_dir: Path) -> dict[str, np.ndarray]:
    """Ours and the peer's synflow, snip, grad_norm, grasp and NASWOT on `PEER_NETS` NB201 networks."""
    torch.set_num_threads(1)
    x, y = inputs.batch(PEER_TASK, PEER_BATCH, 0, data_dir=data_dir)
    pairs = {"synflow": "synflow", "snip": "snip", "grad_norm": "grad_norm", "grasp": "grasp", "naswot": "nwot_relu"}
    table: dict[str, list[float]] = {k: [] for name in pairs for k in (name, "peer_" + name)}
    for record in benchmarks.sample(PEER_TASK, PEER_NETS, seed=7, data_dir=data_dir):
        net = build_network(PEER_TASK, record["arch"])
        theirs = _peer_values(peer, list(pairs.values()), record["arch"], x, y)
        for ours, their_name in pairs.items():
            table[ours].append(proxies.get(ours)(net, x, y))
            table["peer_" + ours].append(theirs[their_name])
    return {k: np.array(v, dtype=float) for k, v in table.items()}


# grasp sums signed terms that largely cancel, and the peer accumulates them in float32
@pytest.mark.parametrize("name, rtol, atol", [("synflow", 1e-9, 0.0), ("snip", 1e-5, 1e-6),
                                              ("grad_norm", 1e-5, 1e-6), ("grasp", 1e-3, 1e-4)])
def test_deterministic_proxies_equal_alethiometer(peer_table: dict[str, np.ndarray], name: str, rtol: float,
                                                  atol: float) -> None:
    ours, theirs = peer_table[name], peer_table["peer_" + name]
    assert len(ours) == PEER_NETS
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
    finite = np.isfinite(ours)
    assert sps.spearmanr(ours[finite], theirs[finite]).statistic >= 0.99


def test_naswot_differs_from_alethiometer_by_design(peer_table: dict[str, np.ndarray]) -> None:
    """alethiometer's ``nwot_relu`` puts the net in eval mode (batch-norm on its initial running
    statistics); we keep batch-norm on batch statistics, as the original NASWOT code and every other
    baseline here do. Same kernel, different activation codes: the values differ and the rankings
    agree only broadly."""
    ours, theirs = peer_table["naswot"], peer_table["peer_naswot"]
    finite = np.isfinite(ours) & np.isfinite(theirs)
    assert not np.allclose(ours[finite], theirs[finite], rtol=1e-3)
    assert sps.spearmanr(ours[finite], theirs[finite]).statistic >= 0.5


def test_alethiometer_zico_is_zero_so_zico_is_not_peer_checked(peer: types.ModuleType, data_dir: Path) -> None:
    """alethiometer 1.1.2 keeps numpy views of ``weight.grad`` while the gradient accumulates in place
    over the two batch halves, so both recorded gradients are identical, every std is zero and its
    ZiCo is 0 on every network. Ours uses separate gradients per half (Li et al.) and is positive."""
    x, y = inputs.batch(PEER_TASK, PEER_BATCH, 0, data_dir=data_dir)
    record = benchmarks.sample(PEER_TASK, 1, seed=7, data_dir=data_dir)[0]
    assert _peer_values(peer, ["zico"], record["arch"], x, y)["zico"] == 0
    assert proxies.get("zico")(build_network(PEER_TASK, record["arch"]), x, y) > 0
