"""Tests for `eznas.probe`: shapes, autograd quantities against finite differences, the
Hutchinson estimate against the exact Hessian diagonal, a net left untouched, determinism
(also across processes), `needs`, and the FLOP and parameter counts. The probe's guarantees to
any caller (no side effect, invariances, errors, layers seen) are in `test_probe_contract.py`."""

from __future__ import annotations

import copy
import hashlib
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eznas.probe import (
    ALL_STATS, LAYER_SCALARS, MATRIX_STATS, NET_SCALARS, SIZE_STATS, ProbeSettings, channel_rank, probe, rademacher,
    redraw_classifier, subsample_index,
)

REPO = Path(__file__).resolve().parents[1]


class Tiny(nn.Module):
    """Conv, BN, ReLU, a grouped strided conv, pooling and a Linear narrower than F."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(self.drop(x.mean((2, 3))))


class Smooth(nn.Module):
    """A tiny twice-differentiable net (tanh) for finite differences and exact Hessians."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.bn(self.conv(x)))
        return self.fc(F.avg_pool2d(x, 2).flatten(1))


def tiny_case(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Tiny()
    return net, torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)


def smooth_case() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    net = Smooth().double()
    x = torch.randn(5, 2, 8, 8, generator=gen, dtype=torch.float64)
    return net, x, torch.randint(0, 4, (5,), generator=gen)


def probe_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The probe's loss: BN on batch statistics, cross-entropy."""
    net.train()
    return F.cross_entropy(net(x), y)


def reference(net: nn.Module) -> nn.Module:
    """A copy of ``net`` as the probe runs it: BN on batch statistics, the rest in eval mode,
    the classifier ``fc`` re-drawn."""
    ref = copy.deepcopy(net).eval()
    for module in ref.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train()
    redraw_classifier(ref.fc)
    ref.fc.weight.requires_grad_(True)
    return ref


def stats_digest(stats) -> str:
    h = hashlib.sha256()
    for name in sorted(stats.layers):
        h.update(name.encode())
        h.update(stats.layers[name].numpy().tobytes())
    h.update(repr(sorted(stats.net.items())).encode())
    return h.hexdigest()


def full_from_sub(sub: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                  shape: tuple[int, int]) -> torch.Tensor:
    """Scatter a subsample that covers every entry back into the full matrix."""
    full = torch.full(shape, float("nan"), dtype=sub.dtype)
    full[rows[:, None], cols[None, :]] = sub
    assert not full.isnan().any(), "subsample does not cover the matrix"
    return full


def test_shapes_keys_and_narrow_layers() -> None:
    net, x, y = tiny_case()
    settings = ProbeSettings(features=64, weight_rows=16, weight_cols=32)
    stats = probe(net, x, y, settings)
    assert set(stats.layers) == set(MATRIX_STATS + LAYER_SCALARS)
    assert set(stats.net) == set(NET_SCALARS)
    assert stats.num_layers == 3
    for name in ("W", "dW", "H"):
        assert stats.layers[name].shape == (3, 16, 32)
    for name in ("A", "G"):
        assert stats.layers[name].shape == (3, 16, 64)
    for name in LAYER_SCALARS:
        assert stats.layers[name].shape == (3,)
    for t in stats.layers.values():
        assert t.dtype == torch.float32 and t.device.type == "cpu" and t.isfinite().all()
    assert all(math.isfinite(v) for v in stats.net.values())
    assert stats.layers["depth"].tolist() == [0.0, 0.5, 1.0]
    # fan-in/out of the grouped conv: 8/4 input channels * 9 taps; 8/4 outputs * 9 taps
    expected_fans = [(3 * 9, 8 * 9), (2 * 9, 2 * 9), (8, 10)]
    assert torch.allclose(stats.layers["log_fan_in"],
                          torch.tensor([math.log(a) for a, _ in expected_fans]))
    assert torch.allclose(stats.layers["log_fan_out"],
                          torch.tensor([math.log(b) for _, b in expected_fans]))
    # the Linear output has 10 < 64 features: its columns repeat with period 10
    a_fc = stats.layers["A"][2]
    assert torch.equal(a_fc[:, :54], a_fc[:, 10:])
    ref = reference(net)  # the probe runs BN on batch statistics, dropout off, its own classifier
    logits = ref(x).detach()
    assert torch.equal(a_fc[:, :10], logits[:, subsample_index(10, 64, 0, 2, "A")[:10]])
    # its weight [10, 8] is repeated cyclically in both directions
    w_fc = stats.layers["W"][2]
    rows, cols = subsample_index(10, 16, 0, 2, "rows"), subsample_index(8, 32, 0, 2, "cols")
    assert torch.equal(w_fc, ref.fc.weight.detach()[rows][:, cols])
    # a wide layer keeps distinct columns
    conv1_cols = subsample_index(8 * 8 * 8, 64, 0, 0, "A")
    assert conv1_cols.unique().numel() == 64


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match=r"features = 0: must be an integer in \[1, "):
        ProbeSettings(features=0)
    with pytest.raises(ValueError, match="hessian_probes = 1.5"):
        ProbeSettings(hessian_probes=1.5)
    with pytest.raises(ValueError, match="loss = 'mse'"):
        ProbeSettings(loss="mse")
    with pytest.raises(ValueError, match="batch_seed = -1"):
        ProbeSettings(batch_seed=-1)
    with pytest.raises(ValueError, match="input_kind = 'video'"):
        ProbeSettings(input_kind="video")
    with pytest.raises(ValueError, match=r"batch_size = 1: must be an integer in \[2, 5000\]"):
        ProbeSettings(batch_size=1)


def test_gradients_match_finite_differences() -> None:
    net, x, y = smooth_case()
    settings = ProbeSettings(features=64, weight_rows=4, weight_cols=32)
    stats = probe(net, x, y, settings)
    work = copy.deepcopy(net)
    redraw_classifier(work.fc)
    eps = 1e-6
    for node, module in enumerate((work.conv, work.fc)):
        weight = module.weight
        flat = weight.detach().view(weight.shape[0], -1)
        rows = subsample_index(flat.shape[0], 4, 0, node, "rows")
        cols = subsample_index(flat.shape[1], 32, 0, node, "cols")
        fd = torch.empty(4, 32, dtype=torch.float64)
        with torch.no_grad():
            for i, r in enumerate(rows.tolist()):
                for j, c in enumerate(cols.tolist()):
                    old = flat[r, c].item()
                    flat[r, c] = old + eps
                    up = probe_loss(work, x, y).item()
                    flat[r, c] = old - eps
                    down = probe_loss(work, x, y).item()
                    flat[r, c] = old
                    fd[i, j] = (up - down) / (2 * eps)
        torch.testing.assert_close(stats.layers["dW"][node].double(), fd, rtol=1e-4, atol=1e-8)

    for node, module in enumerate((work.conv, work.fc)):
        delta = {}

        def perturb(mod, args, out):
            if not delta:
                return None
            out = out.clone()
            out.view(out.shape[0], -1)[delta["n"], delta["c"]] += delta["eps"]
            return out

        handle = module.register_forward_hook(perturb)
        width = 3 * 6 * 6 if node == 0 else 4
        cols = subsample_index(width, 64, 0, node, "A")
        fd = torch.empty(5, 64, dtype=torch.float64)
        with torch.no_grad():
            for n in range(5):
                for j, c in enumerate(cols.tolist()):
                    delta.update(n=n, c=c, eps=eps)
                    up = probe_loss(work, x, y).item()
                    delta["eps"] = -eps
                    down = probe_loss(work, x, y).item()
                    fd[n, j] = (up - down) / (2 * eps)
        handle.remove()
        # G is per sample: N * dLoss/dA, the gradient of each sample's own loss
        torch.testing.assert_close(stats.layers["G"][node].double(), 5 * fd, rtol=1e-4, atol=1e-8)
        a = stats.layers["A"][node].double()
        with torch.no_grad():
            out = {}
            hook = module.register_forward_hook(lambda m, i, o: out.setdefault("a", o))
            probe_loss(work, x, y)
            hook.remove()
        torch.testing.assert_close(a, out["a"].reshape(5, -1)[:, cols], rtol=1e-6, atol=1e-7)


def test_hutchinson_converges_to_exact_hessian_diagonal() -> None:
    net, x, y = smooth_case()
    probes = 2000
    sizes = [(3, 18), (4, 27)]
    settings = ProbeSettings(weight_rows=4, weight_cols=27, hessian_probes=probes)
    stats = probe(net, x, y, settings, needs={"H", "log_h_trace"})
    # exact Hessian over all (here: both kept) node weights jointly, by double autograd
    work = copy.deepcopy(net)
    redraw_classifier(work.fc)
    weights = [work.conv.weight, work.fc.weight.requires_grad_(True)]
    grads = torch.autograd.grad(probe_loss(work, x, y), weights, create_graph=True)
    flat_grad = torch.cat([g.reshape(-1) for g in grads])
    hess = torch.stack([
        torch.cat([h.reshape(-1) for h in torch.autograd.grad(g, weights, retain_graph=True)])
        for g in flat_grad
    ])
    diag = hess.diagonal()
    # Hutchinson: Var[z_i (Hz)_i] = sum_{j != i} H_ij^2; allow 5 standard errors
    stderr = ((hess ** 2).sum(1) - diag ** 2).div(probes).sqrt()
    offset = 0
    for node, (out, width) in enumerate(sizes):
        rows = subsample_index(out, 4, 0, node, "rows")
        cols = subsample_index(width, 27, 0, node, "cols")
        est = full_from_sub(stats.layers["H"][node].double(), rows, cols, (out, width))
        exact = diag[offset:offset + out * width].view(out, width)
        bound = 5 * stderr[offset:offset + out * width].view(out, width) + 1e-6
        assert ((est - exact).abs() <= bound).all(), (est - exact).abs().max()
        trace = est.sum().abs()
        assert stats.layers["log_h_trace"][node].item() == pytest.approx(
            math.log(trace.item()), rel=1e-5)
        offset += out * width
    # exactly: H = mean over probes k of z_k * (Hess @ z_k), z_k Rademacher over both nodes
    few = probe(net, x, y, ProbeSettings(weight_rows=4, weight_cols=27, hessian_probes=3))
    zs = [torch.cat([rademacher(w.shape, 0, node, k, torch.float64, torch.device("cpu"))
                     .reshape(-1) for node, w in enumerate(weights)]) for k in range(3)]
    expected = sum(z * (hess @ z) for z in zs) / 3
    offset = 0
    for node, (out, width) in enumerate(sizes):
        rows = subsample_index(out, 4, 0, node, "rows")
        cols = subsample_index(width, 27, 0, node, "cols")
        est = full_from_sub(few.layers["H"][node].double(), rows, cols, (out, width))
        torch.testing.assert_close(est, expected[offset:offset + out * width].view(out, width),
                                   rtol=1e-5, atol=1e-7)
        offset += out * width


def test_net_left_exactly_as_found() -> None:
    net, x, y = tiny_case()
    net.train()
    net.bn2.eval()  # a mixed-mode net
    net.conv2.weight.requires_grad_(False)
    net.fc.register_forward_hook(lambda m, i, o: None)
    with torch.no_grad():
        net(x)  # non-trivial BN running statistics
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = {name: m.training for name, m in net.named_modules()}
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    hooks = {name: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
             for name, m in net.named_modules()}
    rng = torch.get_rng_state()
    with torch.no_grad():
        stats = probe(net, x, y)
    assert stats.layers["dW"][1].abs().sum() > 0  # the frozen weight still gets a gradient
    after = net.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]), k
    assert modes == {name: m.training for name, m in net.named_modules()}
    assert flags == {name: p.requires_grad for name, p in net.named_parameters()}
    assert hooks == {name: (len(m._forward_hooks), len(m._forward_pre_hooks),
                            len(m._backward_hooks)) for name, m in net.named_modules()}
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(rng, torch.get_rng_state())


def test_batchnorm_runs_on_batch_statistics_whatever_the_mode() -> None:
    net, x, y = tiny_case()
    a = probe(net.eval(), x, y)
    b = probe(net.train(), x, y)
    for name in a.layers:
        assert torch.equal(a.layers[name], b.layers[name]), name


def test_deterministic_in_process_and_across_processes() -> None:
    net, x, y = tiny_case(seed=3)
    first = stats_digest(probe(net, x, y))
    assert first == stats_digest(probe(net, x, y))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        import torch
        torch.set_num_threads({torch.get_num_threads()})
        from test_probe import tiny_case, stats_digest
        from eznas.probe import probe
        print(stats_digest(probe(*tiny_case(seed=3))))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == first


def test_needs_skips_work(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, y = tiny_case()
    calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(kwargs.get("create_graph", False))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    forward_only = probe(net, x, y, needs={"A", "log_params"})
    assert calls == []
    assert set(forward_only.layers) | set(forward_only.net) == SIZE_STATS | {"A"}

    gradient_only = probe(net, x, y, needs={"G"})
    assert calls == [False]
    assert set(gradient_only.layers) | set(gradient_only.net) == SIZE_STATS | {"G"}

    calls.clear()
    full = probe(net, x, y, needs=ALL_STATS)
    assert calls == [True, False]
    for name in gradient_only.layers:
        assert torch.equal(gradient_only.layers[name], full.layers[name]), name
    for name in forward_only.layers:
        assert torch.equal(forward_only.layers[name], full.layers[name]), name
    assert all(full.net[k] == v for k, v in gradient_only.net.items())
    with pytest.raises(ValueError, match="unknown stat"):
        probe(net, x, y, needs={"Hessian"})


def test_flops_params_and_layers_match_hand_counts() -> None:
    net, x, y = tiny_case()
    net.fc.bias.requires_grad_(False)  # frozen parameters count as well
    stats = probe(net, x, y)
    macs = (8 * 8 * 8) * (3 * 9) + (8 * 4 * 4) * (2 * 9) + 10 * 8
    params = (8 * 27 + 8) + 2 * 8 + 8 * 18 + 2 * 8 + 10 * 8 + 10
    assert stats.net["log_flops"] == pytest.approx(math.log(macs), rel=1e-12)
    assert stats.net["log_params"] == pytest.approx(math.log(params), rel=1e-12)
    assert stats.net["log_layers"] == pytest.approx(math.log(3), rel=1e-12)


def test_shared_module_is_one_node_but_counts_flops_twice() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(6, 6)
    net = nn.Sequential(lin, nn.Tanh(), lin)
    stats = probe(net, torch.randn(4, 6), torch.randint(0, 6, (4,)))
    assert stats.num_layers == 1
    assert stats.net["log_flops"] == pytest.approx(math.log(2 * 36))


def test_logit_sum_loss_gradient() -> None:
    net, x, y = smooth_case()
    stats = probe(net, x, y, ProbeSettings(loss="logit_sum", weight_rows=4, weight_cols=32))
    work = reference(net)
    grad = torch.autograd.grad(work(x).sum() / len(x), work.fc.weight)[0]  # the mean over samples
    rows = subsample_index(4, 4, 0, 1, "rows")
    cols = subsample_index(27, 32, 0, 1, "cols")
    torch.testing.assert_close(stats.layers["dW"][1].double(), grad[rows][:, cols],
                               rtol=1e-6, atol=1e-7)


def test_net_without_nodes_is_an_error() -> None:
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        probe(nn.Sequential(nn.Flatten()), torch.randn(2, 3), torch.zeros(2, dtype=torch.long))


def test_max_layers_keeps_evenly_spread_nodes() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(12, 12), nn.Tanh())])
    x, y = torch.randn(8, 12), torch.randint(0, 12, (8,))
    full = probe(net, x, y)
    some = probe(net, x, y, ProbeSettings(max_layers=4))
    assert some.num_layers == 4
    keep = torch.tensor([0, 3, 6, 9])
    for name, tensor in full.layers.items():
        if name not in ("H", "log_h_trace"):  # the Hutchinson probes span the kept nodes only
            assert torch.equal(some.layers[name], tensor[keep]), name
    assert some.net == full.net
    assert torch.allclose(some.layers["depth"], torch.tensor([0, 1 / 3, 2 / 3, 1]))
    assert probe(net, x, y, ProbeSettings(max_layers=1)).layers["depth"].tolist() == [0.0]
    with pytest.raises(ValueError, match=r"max_layers = 0: .* or None"):
        ProbeSettings(max_layers=0)


def test_net_gradient_totals_cover_every_node_even_when_layers_are_dropped() -> None:
    net, x, y = tiny_case()
    ref = reference(net)  # the probe's mode: dropout off, batch-norm on batch statistics
    ref_loss = F.cross_entropy(ref(x), y)
    weights = [ref.conv1.weight, ref.conv2.weight, ref.fc.weight]
    grads = [g.detach() for g in torch.autograd.grad(ref_loss, weights)]
    grad_norm = math.sqrt(sum(float(g.double().square().sum()) for g in grads))
    snip = sum(float((w.detach() * g).abs().double().sum()) for w, g in zip(weights, grads))
    for max_layers in (None, 1):
        stats = probe(net, x, y, ProbeSettings(max_layers=max_layers))
        assert stats.net["log_grad_norm"] == pytest.approx(math.log(grad_norm), rel=1e-5)
        assert stats.net["log_snip_total"] == pytest.approx(math.log(snip), rel=1e-5)


def test_full_resolution_gram_terminals_and_net_scores() -> None:
    import numpy as np

    net, x, y = tiny_case()
    outputs = []
    ref = reference(net)
    for m in (ref.conv1, ref.conv2, ref.fc):
        m.register_forward_hook(lambda m, a, o: outputs.append(o.detach().flatten(1)))
    with torch.no_grad():
        ref(x)
    stats = probe(net, x, y, ProbeSettings(max_layers=2))
    # kept nodes are the first and the last; KA is the sample correlation of the FULL output
    for kept, full in zip(range(2), (outputs[0], outputs[2])):
        want = np.corrcoef(full.double().numpy())
        assert np.allclose(stats.layers["KA"][kept].numpy(), want, atol=1e-5)
        code = (full > 0).double()
        ks = (code @ code.T + (1 - code) @ (1 - code).T) / full.shape[1]
        assert torch.allclose(stats.layers["KS"][kept].double(), ks, atol=1e-6)
    total = sum((((o > 0).double() @ (o > 0).double().T) + ((o <= 0).double() @ (o <= 0).double().T)) / o.shape[1]
                for o in outputs)
    want_naswot = torch.linalg.slogdet(total + 1e-6 * torch.eye(16, dtype=torch.float64)).logabsdet / 16
    assert stats.net["naswot"] == pytest.approx(float(want_naswot), rel=1e-6)  # per sample
    assert stats.layers["KG"].shape == (2, 16, 16) and math.isfinite(stats.net["rcor"])


def _participation_by_eigenvalues(channels: torch.Tensor) -> float:
    """(sum lambda)^2 / sum lambda^2 of the Pearson correlation of the rows of ``channels``."""
    live = channels.double()[channels.double().std(dim=1) > 0]
    eig = torch.linalg.eigvalsh(torch.corrcoef(live))
    return float(eig.sum() ** 2 / eig.square().sum())


def test_channel_rank_equals_the_eigenvalue_participation_ratio() -> None:
    gen = torch.Generator().manual_seed(3)
    spatial = torch.randn(10, 12, 5, 5, generator=gen)
    spatial[:, 4] = 0.5  # a constant channel counts as absent
    want = sum(_participation_by_eigenvalues(spatial[s].reshape(12, -1)) for s in range(8)) / 8
    assert channel_rank(spatial) == pytest.approx(want, rel=1e-5)
    few_positions = torch.randn(3, 40, 2, 3, generator=gen)  # 6 positions < 40 channels: the small Gram side
    want = sum(_participation_by_eigenvalues(few_positions[s].reshape(40, -1)) for s in range(3)) / 3
    assert channel_rank(few_positions) == pytest.approx(want, rel=1e-5)
    flat = torch.randn(16, 7, generator=gen)  # no spatial extent: units correlated over the samples
    assert channel_rank(flat) == pytest.approx(_participation_by_eigenvalues(flat.T), rel=1e-5)


def test_channel_rank_spans_one_to_the_channel_count() -> None:
    base = torch.randn(1, 1, 6, 6).expand(4, 9, 6, 6)
    assert channel_rank(base) == pytest.approx(1.0, rel=1e-5)  # every channel the same signal
    centred = torch.randn(16, 9, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(centred - centred.mean(dim=0))  # 9 zero-mean orthonormal columns
    uncorrelated = q.T.reshape(1, 9, 4, 4).expand(2, 9, 4, 4)
    assert channel_rank(uncorrelated) == pytest.approx(9.0, rel=1e-4)


def test_channel_rank_stats_cover_kept_nodes_and_the_whole_net() -> None:
    net, x, y = tiny_case()
    outputs = []
    ref = reference(net)
    for m in (ref.conv1, ref.conv2, ref.fc):
        m.register_forward_hook(lambda m, a, o: outputs.append(o.detach()))
    with torch.no_grad():
        ref(x)
    ranks = [channel_rank(o) for o in outputs]
    stats = probe(net, x, y, ProbeSettings(max_layers=2))
    assert stats.layers["log_chan_rank"].tolist() == pytest.approx([math.log(ranks[0]), math.log(ranks[2])], rel=1e-5)
    assert stats.net["log_chan_rank_sum"] == pytest.approx(math.log(sum(ranks)), rel=1e-6)
