"""The exported proxy on model-zoo code: timm architectures of eleven families, at small inputs,
score finitely and deterministically and leave no trace; the full probe's statistics are finite
on each (slow). Skipped without timm (a test-only dependency: ``pip install --no-deps timm``)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import published_expression
from eznas import zoo
from eznas.export import export_source
from eznas.probe import ProbeSettings, probe

pytestmark = pytest.mark.skipif(zoo.import_timm() is None, reason="timm not installed (pip install --no-deps timm)")

ARCHITECTURES = (
    "resnet18", "convnext_atto", "efficientnet_b0", "mobilenetv3_small_050", "regnetx_002",
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "mixer_s16_224",
    "levit_128s", "mobilevit_xxs",
)
SIDE, CLASSES, BATCH = 32, 10, 8
PUBLISHED = published_expression()


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def score(tmp_path_factory):
    """The published expression exported to a file, as a user would load it."""
    path = tmp_path_factory.mktemp("zoo") / "proxy.py"
    path.write_text(export_source(PUBLISHED, ProbeSettings(), {"test": True}))
    spec = importlib.util.spec_from_file_location("zoo_proxy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.score


def _case(name: str):
    torch.manual_seed(0)
    net = zoo.build(name, SIDE, CLASSES)
    gen = torch.Generator().manual_seed(1)
    return net, torch.randn(BATCH, 3, SIDE, SIDE, generator=gen), torch.randint(0, CLASSES, (BATCH,), generator=gen)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_exported_proxy_scores_finitely_deterministically_and_leaves_no_trace(name: str, score) -> None:
    net, x, y = _case(name)
    net.train()
    loss = F.cross_entropy(net(x), y)  # a pending backward
    fired = []
    for module in net.modules():
        module.register_forward_hook(lambda m, a, o: fired.append(m))
    state = {k: (v.clone(), v._version) for k, v in net.state_dict(keep_vars=True).items()}
    modes = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    first = score(net, x, y)
    assert math.isfinite(first)
    assert score(net, x, y) == first
    assert fired == []
    for key, tensor in net.state_dict(keep_vars=True).items():
        assert torch.equal(tensor, state[key][0]) and tensor._version == state[key][1], key
    assert modes == [m.training for m in net.modules()]
    assert torch.equal(rng, torch.get_rng_state())
    loss.backward()


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_statistic_is_finite(name: str) -> None:
    net, x, y = _case(name)
    stats = probe(net, x, y)
    for key, value in stats.layers.items():
        assert value.isfinite().all(), key
    assert all(math.isfinite(v) for v in stats.net.values()), stats.net


def test_score_zoo_and_its_report() -> None:
    from eznas import proxies
    from eznas.tables.zoo import zoo_report

    models = [m for m in zoo.ZOO if m.name in ("resnet18", "resnet50", "resnext50_32x4d", "regnetx_002")]
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    scorers = {"size": lambda net, x, y: float(sum(p.numel() for p in net.parameters())),
               "broken": lambda net, x, y: 1 / 0, "params": proxies.get("params")}
    run = zoo.score_zoo(scorers, x, y, models, repeats=1, log=lambda line: None)
    size, broken, params = run.evaluations
    assert size.scores.tolist() == params.scores.tolist() == run.params.tolist()
    assert broken.failed == 4 and "ZeroDivisionError" in broken.errors[0]
    assert (run.fwd_bwd > 0).all() and (run.macs > 0).all()
    text = zoo_report(run, "size", "# setup")
    assert "| proxy | all 4 | ResNet (3) | failed |" in text and "| `size` | " in text
    assert "(one `size` call) / (one forward+backward)" in text and "## Failures" in text
