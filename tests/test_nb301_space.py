"""NAS-Bench-301 networks: NASLib keys -> DARTS genotypes -> the NDS cell code; exact
parameter counts for every entry of the NASLib sample and the rule behind them, key
validation, forward shapes and seeded initialisation.

The sample is looked up as eznas looks it up (``$EZNAS_DATA_DIR``, ``./data``,
``../shared/data``); the data-driven tests are skipped without it.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from eznas import benchmarks, inputs
from eznas.cli import main
from eznas.errors import EznasError
from eznas.spaces import build_network, count_params, nb301
from eznas.spaces.nds_cells import NetworkCell, build_cell_network

TASK = "nb301:cifar10"
# The first key of the sample.
KEY = ("[[(0, 4), (1, 3), (0, 2), (2, 3), (2, 3), (0, 3), (2, 6), (3, 5)], "
       "[(0, 3), (1, 3), (1, 1), (0, 5), (2, 3), (0, 2), (4, 4), (3, 1)]]")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the batches are tiny, and spare threads only spin on busy CI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def records(data_dir) -> list[dict]:
    """The 500 records of the sample, in file order."""
    return benchmarks.load_task(TASK, data_dir)


@pytest.fixture
def fast_meta_init(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Skip torch's default initialisers (slow on meta tensors, irrelevant to counts) and pause
    the cyclic GC while thousands of modules are built."""
    for cls in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
        monkeypatch.setattr(cls, "reset_parameters", lambda self: None)
    gc.disable()
    yield
    gc.enable()
    gc.collect()


def test_ops_are_the_naslib_codes() -> None:
    assert nb301.OPS == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                         "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def test_key_becomes_the_darts_genotype() -> None:
    assert nb301.genotype(KEY) == {
        "normal": [["sep_conv_5x5", 0], ["sep_conv_3x3", 1], ["skip_connect", 0],
                   ["sep_conv_3x3", 2], ["sep_conv_3x3", 2], ["sep_conv_3x3", 0],
                   ["dil_conv_5x5", 2], ["dil_conv_3x3", 3]],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["avg_pool_3x3", 1],
                   ["dil_conv_3x3", 0], ["sep_conv_3x3", 2], ["skip_connect", 0],
                   ["sep_conv_5x5", 4], ["avg_pool_3x3", 3]],
        "reduce_concat": [2, 3, 4, 5],
    }
    assert nb301.genotype(KEY.replace("[", "(").replace("]", ")")) == nb301.genotype(KEY)


@pytest.mark.slow
def test_param_counts_match_every_entry(records: list[dict], data_dir, fast_meta_init: None) -> None:
    raw = json.loads((data_dir / benchmarks.NASLIB_FILES["nb301"]).read_text())["nasbench301"]["cifar10"]
    assert [r["arch"] for r in records] == list(raw) and len(records) == 500
    mismatches = []
    for r, entry in zip(records, raw.values()):
        n = count_params(build_network(TASK, r["arch"], device="meta"))
        if n != round(entry["params"] * 1e6):
            mismatches.append((r["index"], n, entry["params"]))
    assert not mismatches, f"{len(mismatches)}/500 wrong (index, ours, file): {mismatches[:5]}"


def _op_batchnorms(net: NetworkCell) -> list[nn.BatchNorm2d]:
    return [m for cell in net.cells for m in cell.ops.modules() if isinstance(m, nn.BatchNorm2d)]


def test_count_rule_is_op_batchnorms_without_scale_and_shift(records: list[dict], fast_meta_init: None) -> None:
    """Affine op BatchNorms would add exactly 2 x channels each; all the others are affine."""
    for r in records[::50]:
        net_dict = {"genotype": nb301.genotype(r["arch"]), "width": 32, "depth": 8}
        with torch.device("meta"):
            affine = build_cell_network(net_dict, imagenet=False, num_classes=10)
            ours = build_network(TASK, r["arch"], device="meta")
        extra = sum(2 * bn.num_features for bn in _op_batchnorms(affine))
        assert extra > 0 and count_params(affine) - extra == count_params(ours) == r["params"]
        assert not any(bn.affine for bn in _op_batchnorms(ours))
        op_bns = set(map(id, _op_batchnorms(ours)))
        others = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in op_bns]
        assert others and all(bn.affine for bn in others)


def test_op_affinity_does_not_change_the_function_at_init() -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    net_dict = {"genotype": nb301.genotype(KEY), "width": 8, "depth": 5}
    outs = []
    for op_affine in (True, False):
        torch.manual_seed(0)
        outs.append(build_cell_network(net_dict, imagenet=False, num_classes=10, op_affine=op_affine)(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_layout_is_the_nb301_darts_network(fast_meta_init: None) -> None:
    net = build_network(TASK, KEY, device="meta")
    assert isinstance(net, NetworkCell) and len(net.cells) == 8
    assert [i for i, cell in enumerate(net.cells) if any(op.stride == 2 for op in cell.ops
            if isinstance(op, nn.MaxPool2d | nn.AvgPool2d))] == [2, 5]
    assert net.stem[0].out_channels == 96 and net.classifier.in_features == 4 * 128
    assert net.classifier.out_features == 10
    assert net(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


@pytest.mark.parametrize("bad, match", [
    (None, "must be a string"),
    (["x"], "must be a string"),
    ("", "not a list or tuple literal"),
    ("__import__('os')", "not a list or tuple literal"),
    (KEY[:-1], "not a list or tuple literal"),
    ("[" + KEY.split("], ")[0][1:] + "]]", "exactly two cells"),
    (KEY.replace(", (3, 5)]", "]"), "normal cell needs 8 entries"),
    (KEY.replace("(0, 4)", "(0, 4, 1)"), r"normal entry 0 must be"),
    (KEY.replace("(0, 4)", "(0, 4.0)"), r"normal entry 0 must be"),
    (KEY.replace("(0, 4)", "(True, 4)"), r"normal entry 0 must be"),
    (KEY.replace("(2, 3), (2, 3)", "(2, 3), (4, 3)"), "normal entry 4 reads state 4"),
    (KEY.replace("(0, 2), (2, 3)", "(-1, 2), (2, 3)"), "normal entry 2 reads state -1"),
    (KEY.replace("(4, 4)", "(4, 7)"), "reduce entry 6 has op code 7"),
    (KEY.replace("(2, 3), (0, 3), (2, 6)", "(2, 3), (2, 6), (2, 6)"), "normal node 2 reads state 2 twice"),
])
def test_malformed_keys_are_clear_errors(bad: object, match: str) -> None:
    with pytest.raises(EznasError, match=match) as err:
        nb301.build(bad)  # type: ignore[arg-type]
    message = str(err.value)
    assert message.startswith(f"invalid NB301 arch {bad!r}") and "\n" not in message


@pytest.mark.parametrize("value", [0, 10.0, False])
def test_bad_num_classes(value: object) -> None:
    with pytest.raises(EznasError, match="num_classes"):
        nb301.build(KEY, num_classes=value)  # type: ignore[arg-type]


def test_forward_on_real_images(records: list[dict], data_dir) -> None:
    x, y = inputs.batch(TASK, 4, 0, data_dir=data_dir)
    by_size = sorted(records, key=lambda r: r["params"])
    for r in (by_size[0], by_size[len(by_size) // 2], by_size[-1]):
        net = build_network(TASK, r["arch"], seed=1)
        logits = net(x)
        assert logits.shape == (4, 10) and torch.isfinite(logits).all(), r["index"]
    nn.functional.cross_entropy(logits, y).backward()  # the largest network
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_seeded_initialisation_is_reproducible() -> None:
    rng = torch.get_rng_state()
    a, b, c = (build_network(TASK, KEY, seed=s).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), rng)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if a[k].dim() > 1]
    assert all(not torch.equal(a[k], c[k]) for k in weights)


def test_info_command(data_dir, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", TASK, "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.startswith(
        "nb301:cifar10: 500 architectures from naslib/zc_nasbench301.json; accuracy min 90.73")
    assert main(["info", TASK, "--index", "0", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nb301:cifar10 #0: accuracy 93.90 %, 1204906 parameters") and KEY in out
