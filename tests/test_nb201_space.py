"""Tests for `eznas.spaces.nb201`: arch parsing, and networks equal to xautodl's NB201 nets."""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eznas.errors import EznasError
from eznas.spaces import build_network, count_params, nb201
from eznas.tasks import NB201_DATASETS

REPO = Path(__file__).resolve().parents[1]
CSV_NAME = Path("nb201") / "nats_bench.csv"
BEST_C100 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
# Edge cases next to the random sample: a cut cell, a node with only `none` inputs, no convs.
SPECIAL = [
    BEST_C100,
    ALL_NONE,
    "|nor_conv_1x1~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|none~2|",
    "|skip_connect~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|avg_pool_3x3~1|skip_connect~2|",
]


def _csv_path() -> Path | None:
    """The NATS-Bench CSV under $EZNAS_DATA_DIR or ../shared/data (repo-relative), if any."""
    dirs = [Path(os.environ["EZNAS_DATA_DIR"])] if os.environ.get("EZNAS_DATA_DIR") else []
    dirs.append(REPO.parent / "shared" / "data")
    return next((d / CSV_NAME for d in dirs if (d / CSV_NAME).is_file()), None)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the batches are tiny, and spare threads only spin on busy CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def all_archs() -> list[str]:
    """All 15,625 arch strings of the benchmark, in index order."""
    path = _csv_path()
    if path is None:
        pytest.skip(f"{CSV_NAME} not found under $EZNAS_DATA_DIR or ../shared/data")
    with open(path, newline="") as f:
        return [row["ArchitectureString"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def sample(all_archs: list[str]) -> list[str]:
    """200 arch strings drawn with a fixed seed."""
    return random.Random(201).sample(all_archs, 200)


def _xautodl_net(arch: str, num_classes: int) -> torch.nn.Module:
    """The reference network: xautodl's ``infer.tiny`` with the benchmark's C=16, N=5."""
    models = pytest.importorskip("xautodl.models", reason="xautodl (test-only) is not installed")
    from xautodl.models.cell_searchs.genotypes import Structure

    config = {
        "name": "infer.tiny",
        "C": 16,
        "N": 5,
        "genotype": Structure.str2structure(arch),
        "num_classes": num_classes,
    }
    return models.get_cell_based_tiny_net(config)


def _shapes(net: torch.nn.Module) -> list[tuple[int, ...]]:
    """Shapes of the state_dict entries, in order."""
    return [tuple(t.shape) for t in net.state_dict().values()]


def test_ops_are_the_five_nb201_ops() -> None:
    assert nb201.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def test_parse_accepts_every_benchmark_arch(all_archs: list[str]) -> None:
    assert len(all_archs) == 15625
    for arch in all_archs:
        cell = nb201.parse_arch(arch)
        assert [len(node) for node in cell] == [1, 2, 3]
    assert nb201.parse_arch(BEST_C100) == (
        (("nor_conv_3x3", 0),),
        (("nor_conv_3x3", 0), ("nor_conv_3x3", 1)),
        (("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_3x3", 2)),
    )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|",
        "||",
        "|nor_conv_3x3~0|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",
        BEST_C100 + "+|none~0|none~1|none~2|none~3|",
        BEST_C100[1:],
        BEST_C100[:-1],
        BEST_C100.replace("+", "++", 1),
        BEST_C100.replace("+", ""),
        BEST_C100.replace("~1|+", "~2|+"),
        BEST_C100.replace("skip_connect~0", "skip_connect~1"),
        BEST_C100.replace("skip_connect~0|", ""),
        BEST_C100.replace("skip_connect~0", "skip_connect"),
        BEST_C100.replace("skip_connect~0", "skip_connect~0~0"),
        BEST_C100.replace("skip_connect~0", "skip_connect~00"),
        BEST_C100.replace("skip_connect~0", "skip_connect~ 0"),
        BEST_C100.replace("skip_connect", "max_pool_3x3"),
        BEST_C100.replace("skip_connect", "Skip_Connect"),
        BEST_C100.replace("nor_conv_3x3~0|+", "nor_conv_3x3~0||+", 1),
        BEST_C100 + "\n",
        " " + BEST_C100,
        "|skip_connect~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|skip_connect~0|none~1|none~2|",
        None,
        42,
        [("nor_conv_3x3", 0)],
        BEST_C100.encode(),
    ],
)
def test_parse_rejects_malformed(bad: object) -> None:
    with pytest.raises(EznasError) as err:
        nb201.parse_arch(bad)  # type: ignore[arg-type]
    message = str(err.value)
    assert "\n" not in message and "op~0" in message
    if isinstance(bad, str):
        assert repr(bad) in message


@pytest.mark.parametrize("field", ["num_classes", "C", "N"])
@pytest.mark.parametrize("value", [0, -1, 2.0, True, "16"])
def test_build_rejects_bad_sizes(field: str, value: object) -> None:
    sizes = {"num_classes": 10, field: value}
    with pytest.raises(EznasError, match=field):
        nb201.build(BEST_C100, **sizes)  # type: ignore[arg-type]


@pytest.mark.slow
def test_param_counts_and_layout_match_xautodl(sample: list[str]) -> None:
    """Same parameter count and the same state_dict shapes, in order, for 204 archs: the first 10 for the
    3 datasets' heads, each other one for one of them in turn."""
    heads = list(NB201_DATASETS.values())
    for i, arch in enumerate(SPECIAL + sample):
        for num_classes in heads if i < 10 else heads[i % 3:i % 3 + 1]:
            device = "cpu" if i < 10 else "meta"  # the bulk on meta, real ones for a subsample
            with torch.device(device):
                ours = nb201.build(arch, num_classes=num_classes)
                ref = _xautodl_net(arch, num_classes)
            assert count_params(ours) == count_params(ref), (arch, num_classes)
            assert _shapes(ours) == _shapes(ref), (arch, num_classes)


def test_none_edges_have_no_parameters() -> None:
    with torch.device("meta"):
        cut = nb201.build(ALL_NONE, num_classes=10)
    # stem + 2 reduction blocks + head; the 15 cells are parameter-free.
    assert all(count_params(cell) == 0 for cell in cut.cells if isinstance(cell, nb201.Cell))
    stem = 9 * 3 * 16 + 2 * 16
    reductions = sum(
        9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out
        for c_in, c_out in ((16, 32), (32, 64))
    )
    head = 2 * 64 + 64 * 10 + 10
    assert count_params(cut) == stem + reductions + head


def _randomize(net: torch.nn.Module, seed: int) -> None:
    """Give BatchNorm weights, biases and running stats (and the fc bias) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point() and tensor.dim() == 1:
                if name.endswith(("weight", "running_var")):
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
                else:
                    tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)


@pytest.mark.parametrize("dataset", list(NB201_DATASETS))
def test_outputs_match_xautodl_with_copied_weights(sample: list[str], dataset: str) -> None:
    """Eval-mode logits equal xautodl's after copying its (randomized) weights into ours."""
    num_classes = NB201_DATASETS[dataset]
    side = 16 if dataset == "ImageNet16-120" else 32
    x = torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(0))
    for k, arch in enumerate(SPECIAL + sample[:8]):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(k)
            ref = _xautodl_net(arch, num_classes).eval()
        _randomize(ref, k)
        ours = nb201.build(arch, num_classes=num_classes).eval()
        keys = list(ours.state_dict())
        ours.load_state_dict(dict(zip(keys, ref.state_dict().values(), strict=True)))
        with torch.no_grad():
            _, expected = ref(x)
            got = ours(x)
        assert isinstance(got, torch.Tensor) and got.shape == (4, num_classes)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=arch)


def test_train_mode_logits_and_gradients_match_xautodl() -> None:
    """Batch-statistics forward and backward agree too, input gradient included."""
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for arch in SPECIAL[:3]:
        ref = _xautodl_net(arch, 10).train()
        ours = nb201.build(arch, num_classes=10).train()
        keys = list(ours.state_dict())
        ours.load_state_dict(dict(zip(keys, ref.state_dict().values(), strict=True)))
        results = []
        for net, logits_of in ((ours, lambda out: out), (ref, lambda out: out[1])):
            xin = x.clone().requires_grad_(True)
            logits = logits_of(net(xin))
            logits.square().sum().backward()
            results.append([logits, xin.grad] + [p.grad for p in net.parameters()])
        for got, expected in zip(*results, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=arch)


def test_same_seed_draws_xautodl_initialisation() -> None:
    """Modules are created in xautodl's order, so a seed gives the same default init."""
    for arch in SPECIAL[:3]:
        torch.manual_seed(7)
        ref = _xautodl_net(arch, 100)
        ours = build_network("nb201:cifar100", arch, seed=7)
        for a, b in zip(ours.state_dict().values(), ref.state_dict().values(), strict=True):
            assert torch.equal(a, b), arch


def test_build_network_seeding() -> None:
    rng = torch.get_rng_state()
    a = build_network("nb201:cifar10", BEST_C100, seed=3).state_dict()
    b = build_network("nb201:cifar10", BEST_C100, seed=3).state_dict()
    c = build_network("nb201:cifar10", BEST_C100, seed=4).state_dict()
    assert torch.equal(torch.get_rng_state(), rng)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.conv.weight"], c["stem.conv.weight"])
    assert not torch.equal(a["head.fc.weight"], c["head.fc.weight"])


def test_build_network_on_meta_device() -> None:
    net = build_network("nb201:ImageNet16-120", BEST_C100, device="meta")
    assert all(p.is_meta for p in net.parameters())
    assert net(torch.empty(2, 3, 16, 16, device="meta")).shape == (2, 120)
