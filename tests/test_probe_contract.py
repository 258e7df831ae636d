"""The probe's guarantees to any caller (DESIGN, Generality): no observable effect on the net,
invariance to ``requires_grad`` flags, to the classifier's initialisation and (in ranking) to the
batch size, attention projections seen and anything unseen reported, and one-line errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import nn

from conftest import published_expression
from eznas.probe import ALL_STATS, ProbeSettings, private_copy, probe

SMALL = ProbeSettings(features=16, weight_rows=8, weight_cols=8, max_layers=6)


class ConvNet(nn.Module):
    """Conv-BN-ReLU blocks, dropout and a Linear head; ``width`` and ``depth`` vary the family."""

    def __init__(self, width: int = 8, depth: int = 2, classes: int = 10) -> None:
        super().__init__()
        layers, channels = [], 3
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x).mean((2, 3))))


class Encoder(nn.Module):
    """A tiny ViT: patch conv, a transformer encoder layer (nn.MultiheadAttention inside), a head."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=batch_first)
        self.batch_first = batch_first
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        if not self.batch_first:
            tokens = tokens.transpose(0, 1)
        tokens = self.block(tokens)
        return self.head(tokens.mean(1 if self.batch_first else 0))


def batch(n: int = 12, side: int = 8, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, side, side, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def assert_same_stats(a, b) -> None:
    assert a.layers.keys() == b.layers.keys() and a.net.keys() == b.net.keys()
    for name in a.layers:
        assert torch.equal(a.layers[name], b.layers[name]), name
    assert a.net == b.net


# ----------------------------------------------------------------------------- no side effect

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_pending_backward_still_runs(mode: str) -> None:
    torch.manual_seed(0)
    net = ConvNet()
    net.train(mode == "train")
    x, y = batch()
    loss = F.cross_entropy(net(x), y)
    probe(net, x, y, SMALL)
    loss.backward()  # raised "modified by an inplace operation" when the probe bumped BN buffers
    assert all(p.grad is not None for p in net.parameters())


def test_no_trace_on_the_net_its_grads_flags_modes_hooks_and_rng() -> None:
    torch.manual_seed(0)
    net = ConvNet()
    net.train()
    net.body[1].eval()
    net.body[0].weight.requires_grad_(False)
    x, y = batch()
    F.cross_entropy(net(x), y).backward()  # existing .grad and non-trivial BN statistics
    fired = []
    net.head.register_forward_hook(lambda m, a, o: fired.append("forward"))
    net.body[0].register_forward_pre_hook(lambda m, a: fired.append("pre"))
    net.body[3].register_full_backward_hook(lambda m, gi, go: fired.append("backward"))
    net.head.weight.register_hook(lambda g: fired.append("tensor"))
    state = {k: (v.clone(), v._version) for k, v in net.state_dict(keep_vars=True).items()}
    grads = {name: (p.grad, p.grad.clone()) for name, p in net.named_parameters() if p.grad is not None}
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    modes = {name: m.training for name, m in net.named_modules()}
    rng = torch.get_rng_state()
    probe(net, x, y, SMALL)
    assert fired == []
    for name, tensor in net.state_dict(keep_vars=True).items():
        value, version = state[name]
        assert torch.equal(tensor, value) and tensor._version == version, name
    for name, p in net.named_parameters():
        if name in grads:
            assert p.grad is grads[name][0] and torch.equal(p.grad, grads[name][1]), name
        else:
            assert p.grad is None
    assert flags == {name: p.requires_grad for name, p in net.named_parameters()}
    assert modes == {name: m.training for name, m in net.named_modules()}
    assert torch.equal(rng, torch.get_rng_state())


def test_the_inputs_are_not_written() -> None:
    class InPlace(ConvNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x.mul_(2))

    torch.manual_seed(0)
    x, y = batch()
    before = x.clone()
    probe(InPlace(), x, y, SMALL)
    assert torch.equal(x, before)


# ----------------------------------------------------------------------------- invariances

def test_stats_do_not_depend_on_requires_grad_flags() -> None:
    torch.manual_seed(0)
    net = ConvNet()
    x, y = batch()
    trainable = probe(net, x, y, SMALL)
    for p in net.parameters():
        p.requires_grad_(False)
    assert_same_stats(trainable, probe(net, x, y, SMALL))


@pytest.mark.parametrize("head", ["zeros", "scaled"])
def test_stats_do_not_depend_on_the_classifier_initialisation(head: str) -> None:
    x, y = batch()
    for width, depth in ((4, 1), (8, 2), (16, 3)):
        torch.manual_seed(width)
        net = ConvNet(width, depth)
        default = probe(net, x, y, SMALL)
        with torch.no_grad():
            if head == "zeros":
                net.head.weight.zero_()
                net.head.bias.zero_()
            else:
                net.head.weight.mul_(1e-3)
        other = probe(net, x, y, SMALL)
        assert_same_stats(default, other)
        assert default.layers["log_dw_norm"][0] > math.log(1e-20)  # gradients reach the first layer


def test_per_sample_statistics_keep_their_scale_across_batch_sizes() -> None:
    torch.manual_seed(0)
    net = ConvNet(16, 3)
    settings = ProbeSettings(max_layers=None, features=32)
    small, large = (probe(net, *batch(n, 8, 10, seed=n), settings) for n in (16, 64))
    g_small, g_large = (s.layers["G"].abs().mean(dim=(1, 2)).log() for s in (small, large))
    assert (g_small - g_large).abs().max() < 0.5  # a sum over samples would differ by log 4
    for name in ("naswot", "rcor"):  # logdets of [N, N] kernels, per sample
        assert 0.5 < large.net[name] / small.net[name] < 2.0, (name, small.net[name], large.net[name])


def _nb201_scores(batch_size: int) -> list[float]:
    from eznas import gp as programs
    from eznas.fitness import Evaluator
    from eznas.statsbatch import stack
    from eznas.spaces import build_network

    ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    gen = torch.Generator().manual_seed(7)
    archs = []
    for _ in range(8):
        picks = torch.randint(0, 5, (6,), generator=gen).tolist()
        p = [ops[i] for i in picks]
        archs.append(f"|{p[0]}~0|+|{p[1]}~0|{p[2]}~1|+|{p[3]}~0|{p[4]}~1|{p[5]}~2|")
    x, y = batch(batch_size, 16, 120, seed=3)
    tree = programs.parse(PUBLISHED)
    needs = programs.probe_needs(tree)
    stats = [probe(build_network("nb201:ImageNet16-120", a, seed=0), x, y, needs=needs) for a in archs]
    evaluator = Evaluator(stack(stats, [0.0] * len(stats), ["nb201:ImageNet16-120"] * len(stats), list(range(len(stats)))))
    return [float(v) for v in evaluator.scores(tree)]


PUBLISHED = published_expression()


@pytest.mark.slow
def test_the_published_expression_ranks_alike_at_batch_16_and_64() -> None:
    tau = sps.kendalltau(_nb201_scores(16), _nb201_scores(64)).statistic
    assert tau >= 0.6, tau


# ----------------------------------------------------------------------------- layers seen

@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_projections_are_nodes_and_the_copy_computes_the_same(batch_first: bool) -> None:
    torch.manual_seed(0)
    net = Encoder(batch_first)
    x, y = batch(6, 8, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unseen
        stats = probe(net, x, y, ProbeSettings(max_layers=None))
    # patch conv, packed in-projection [48, 16], out_proj, linear1, linear2, head
    assert stats.num_layers == 6
    assert torch.exp(stats.layers["log_numel"]).round().tolist() == [768, 768, 256, 512, 512, 80]
    assert (stats.layers["log_dw_norm"] > math.log(1e-12)).all()
    attention, seen = net.eval().block.self_attn, private_copy(net).block.self_attn  # eval: no dropout
    tokens = torch.randn(6, 4, 16) if batch_first else torch.randn(4, 6, 16)
    mask = torch.rand(4, 4) > 0.7
    for kwargs in ({}, {"attn_mask": mask, "need_weights": True, "average_attn_weights": False}):
        want = attention(tokens, tokens, tokens, **kwargs)
        got = seen(tokens, tokens, tokens, **kwargs)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cross_attention_with_separate_projections_is_seen() -> None:
    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = nn.Linear(4, 8)
            self.attention = nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = x.view(len(x), 3, -1)
            out, _ = self.attention(self.q(tokens[..., :4]), tokens[..., :6], tokens[..., 6:11])
            return self.head(out.mean(1))

    torch.manual_seed(0)
    net = Cross()
    x, y = torch.randn(5, 33), torch.randint(0, 3, (5,))
    stats = probe(net, x, y, ProbeSettings(max_layers=None))
    assert torch.exp(stats.layers["log_numel"]).round().tolist() == [32, 64, 48, 40, 64, 24]
    work = private_copy(net)
    with torch.no_grad():
        torch.testing.assert_close(work(x), net.eval()(x), rtol=1e-5, atol=1e-6)


def test_layers_the_probe_cannot_see_are_reported() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.conv = nn.Conv1d(8, 8, 3, padding=1)
            self.head = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(self.embed(x).transpose(1, 2)).mean(2))

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"weights of Conv1d, Embedding layers are not seen"):
        stats = probe(Mixed(), torch.randint(0, 20, (6, 5)), torch.randint(0, 4, (6,)))
    assert stats.num_layers == 1


# ----------------------------------------------------------------------------- logits and errors

@pytest.mark.parametrize("wrap", ["tuple", "list", "dict", "out"])
def test_logits_conventions(wrap: str) -> None:
    class Wrapped(ConvNet):
        def forward(self, x: torch.Tensor):
            logits = super().forward(x)
            features = torch.zeros(len(x), 3)
            return {"tuple": (features, logits), "list": [features, logits],
                    "dict": {"features": features, "logits": logits}, "out": {"aux": features, "out": logits}}[wrap]

    torch.manual_seed(0)
    plain = ConvNet()
    wrapped = Wrapped()
    wrapped.load_state_dict(plain.state_dict())
    x, y = batch()
    assert_same_stats(probe(plain, x, y, SMALL), probe(wrapped, x, y, SMALL))


def test_targets_may_be_none_for_the_logit_sum_loss() -> None:
    torch.manual_seed(0)
    net = ConvNet()
    x, y = batch()
    settings = ProbeSettings(loss="logit_sum", max_layers=4)
    assert_same_stats(probe(net, x, y, settings), probe(net, x, None, settings))


class Returns(nn.Module):
    """A ConvNet whose forward returns ``kind`` around its logits."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = ConvNet()
        self.kind = kind

    def forward(self, x: torch.Tensor):
        logits = self.net(x)
        return {"features": {"features": logits}, "none": None, "image": logits[:, :, None, None].expand(-1, -1, 2, 2),
                "tuple": (logits, "done")}[self.kind]


def test_errors_are_one_line_and_name_the_argument() -> None:
    torch.manual_seed(0)
    net = ConvNet()
    x, y = batch()
    cases = [
        ((net, x[:0], y[:0]), r"^inputs: the batch is empty"),
        ((net, [x[0], x[1]], y[:2]), r"^inputs: expected one tensor .* got list; stack"),
        ((net, x, None), r"^targets: None"),
        ((net, x, y.tolist()), r"^targets: expected an integer tensor \[N\] .* got list"),
        ((net, x, y.float()), r"^targets: expected an integer tensor of shape \[12\]"),
        ((net, x, y[:5]), r"^targets: expected an integer tensor of shape \[12\]"),
        ((net, x, y + 10), r"^targets: labels must lie in \[0, 10\) for the net's 10 output classes"),
        ((nn.Sequential(nn.Flatten(), nn.Linear(192, 8), nn.BatchNorm1d(8), nn.Linear(8, 10)), x[:1], y[:1]),
         r"^inputs: a batch of 1 is too small for the net's normalisation layers"),
        ((Returns("features"), x, y), r"^net: its forward returned dict with keys \['features'\]"),
        ((Returns("none"), x, y), r"^net: its forward returned NoneType"),
        ((Returns("tuple"), x, y), r"^net: its forward returned tuple"),
        ((Returns("image"), x, y), r"^net: its logits have shape \(2, 10, 2, 2\), expected \[2, classes\]"),
        ((nn.Sequential(nn.Flatten()), x, y), r"^net: no Conv2d or Linear layer ran"),
    ]
    for args, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as info:
            probe(*args, SMALL)
        assert "\n" not in str(info.value), pattern


def test_every_stat_can_be_asked_alone() -> None:
    torch.manual_seed(0)
    net = Encoder()
    x, y = batch(6, 8, 5)
    full = probe(net, x, y, SMALL)
    for name in sorted(ALL_STATS):
        alone = probe(net, x, y, SMALL, needs={name})
        where = alone.layers if name in alone.layers else alone.net
        want = full.layers[name] if name in full.layers else full.net[name]
        assert torch.equal(torch.as_tensor(where[name]), torch.as_tensor(want)), name
