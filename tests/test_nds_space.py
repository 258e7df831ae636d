"""NDS networks: exact parameter counts for every ImageNet sweep entry, forward shapes,
input validation and seeded initialisation.

The data is looked up in ``$EZNAS_DATA_DIR/nds`` and then ``<repo>/../shared/data/nds``; the
data-driven tests are skipped when neither holds the NDS json files.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from eznas.errors import EznasError
from eznas.spaces import build_network, count_params, nds

REPO = Path(__file__).resolve().parents[1]


def _nds_dir() -> Path | None:
    """The first directory holding NDS ``*_in.json`` files, or None."""
    candidates = []
    if os.environ.get("EZNAS_DATA_DIR"):
        candidates.append(Path(os.environ["EZNAS_DATA_DIR"]) / "nds")
    candidates.append(REPO.parent / "shared" / "data" / "nds")
    return next((d for d in candidates if any(d.glob("*_in.json"))), None)


NDS_DIR = _nds_dir()
IN_FILES = sorted(NDS_DIR.glob("*_in.json")) if NDS_DIR else []
RERUN_FILES = sorted(NDS_DIR.glob("*_reruns.json")) if NDS_DIR else []
needs_data = pytest.mark.skipif(
    NDS_DIR is None,
    reason="NDS data not found: set EZNAS_DATA_DIR to a directory with nds/*_in.json "
           "or provide ../shared/data/nds next to the repository",
)

# A small hand-written DARTS-style genotype for the data-free tests.
TOY_CELL_NET = {
    "aux": False, "depth": 3, "drop_prob": 0.0, "width": 8,
    "genotype": {
        "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ["dil_conv_3x3", 2], ["none", 0]],
        "normal_concat": [2, 3],
        "reduce": [["max_pool_3x3", 0], ["skip_connect", 1], ["avg_pool_3x3", 2],
                   ["conv_7x1_1x7", 1]],
        "reduce_concat": [2, 3],
    },
}


DARTS_V2 = {  # the DARTS paper's final (second-order) cell
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
    "reduce_concat": [2, 3, 4, 5],
}


def _load(path: Path) -> list[dict] | dict:
    with open(path) as f:
        return json.load(f)


@pytest.fixture
def fast_meta_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip torch's default initialisers, which are slow on meta tensors and irrelevant to
    parameter counts, and pause the cyclic GC while thousands of modules are built."""
    for cls in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
        monkeypatch.setattr(cls, "reset_parameters", lambda self: None)
    gc.disable()
    yield
    gc.enable()
    gc.collect()


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("path", IN_FILES, ids=lambda p: p.stem)
def test_param_counts_match_the_nds_file(path: Path, fast_meta_init: None) -> None:
    """300 entries of each file (seeded; the smallest and largest networks among them): every entry of
    every file matched when the builders were written, and a sample keeps the suite fast."""
    entries = _load(path)
    by_size = sorted(range(len(entries)), key=lambda i: entries[i]["params"])
    picked = sorted({by_size[0], by_size[-1], *random.Random(0).sample(range(len(entries)), min(300, len(entries)))})
    mismatches = []
    for i in picked:
        entry = entries[i]
        net = build_network(f"nds:{path.stem}", entry["net"], device="meta")
        n = count_params(net)
        if n != entry["params"]:
            mismatches.append((i, n, entry["params"]))
    assert not mismatches, f"{len(mismatches)}/{len(picked)} wrong (index, ours, NDS): " \
                           f"{mismatches[:5]}"


@needs_data
@pytest.mark.parametrize("path", RERUN_FILES, ids=lambda p: p.stem)
def test_param_counts_match_cifar_reruns(path: Path) -> None:
    # CIFAR-10 AnyNets (3x3 stride-1 stem, 10 classes): two architectures, 100 seeds each.
    entries = [e for runs in _load(path).values() for e in runs]
    distinct = {json.dumps(e["net"], sort_keys=True): e["params"] for e in entries}
    for net_json, params in distinct.items():
        net = build_network(f"nds:{path.stem}", json.loads(net_json), device="meta")
        assert count_params(net) == params, net_json


@pytest.mark.parametrize("imagenet, width, depth, classes, params", [
    (False, 36, 20, 10, 3_349_342),  # DARTS CIFAR-10 evaluation network (paper: 3.3M)
    (True, 48, 14, 1000, 4_718_752),  # DARTS ImageNet mobile setting (paper: 4.7M)
])
def test_darts_v2_matches_published_sizes(imagenet: bool, width: int, depth: int, classes: int,
                                          params: int) -> None:
    net_dict = {"genotype": DARTS_V2, "width": width, "depth": depth}
    with torch.device("meta"):
        net = nds.build(net_dict, imagenet=imagenet, num_classes=classes)
    assert count_params(net) == params


@needs_data
@pytest.mark.parametrize("path", IN_FILES, ids=lambda p: p.stem)
def test_imagenet_forward_gives_finite_logits(path: Path) -> None:
    entries = _load(path)
    rng = random.Random(f"nds-forward-{path.stem}")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for i in rng.sample(range(len(entries)), 2):
        net = build_network(f"nds:{path.stem}", entries[i]["net"], seed=i).eval()
        with torch.no_grad():
            logits = net(x)
        assert logits.shape == (2, 1000), f"entry {i}"
        assert torch.isfinite(logits).all(), f"entry {i}"


@needs_data
@pytest.mark.parametrize("stem", ["NASNet_in", "ResNet_lr-wd_in"])
def test_cifar_layout_forward(stem: str) -> None:
    if not (NDS_DIR / f"{stem}.json").is_file():
        pytest.skip(f"{stem}.json not in {NDS_DIR}")
    net_dict = _load(NDS_DIR / f"{stem}.json")[0]["net"]
    if "ss" in net_dict:  # AnyNet stems follow ss[0]: 1 is the CIFAR 3x3 stride-1 stem
        net_dict = {**net_dict, "ss": [1] + net_dict["ss"][1:]}
    net = nds.build(net_dict, imagenet=False, num_classes=10).eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_cifar_cell_stem_has_three_times_width_channels() -> None:
    net = nds.build(TOY_CELL_NET, imagenet=False, num_classes=10)
    conv = net.stem[0]
    assert (conv.in_channels, conv.out_channels, conv.stride) == (3, 24, (1, 1))


def test_toy_imagenet_forward_odd_resolution() -> None:
    # 72 -> 9 after the stem: the factorized reduce and pooling see odd sizes.
    net = nds.build(TOY_CELL_NET, imagenet=True, num_classes=1000).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 72, 72)).shape == (1, 1000)


def _with(net: dict, path: tuple, value: object) -> dict:
    """A deep copy of ``net`` with the item at ``path`` replaced by ``value``."""
    out = copy.deepcopy(net)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


ANYNET = {"block_type": "res_bottleneck_block", "ds": [1, 1, 1], "ws": [32, 32, 64],
          "ss": [8, 1, 2], "bot_muls": [1.0, 0.5, 0.5], "num_gs": [1, 2, 4]}


@pytest.mark.parametrize("net, match", [
    (_with(TOY_CELL_NET, ("genotype", "normal", 1), ["sep_conv_9x9", 1]), "sep_conv_9x9"),
    (_with(TOY_CELL_NET, ("genotype", "reduce", 0), ["conv", 0, 1]), r"reduce\[0\]"),
    (_with(TOY_CELL_NET, ("genotype", "normal", 2), ["skip_connect", 5]), "reads state 5"),
    (_with(TOY_CELL_NET, ("genotype", "normal_concat"), [2, 9]), "normal_concat"),
    (_with(TOY_CELL_NET, ("genotype", "reduce"), [["none", 0]]), "two per node"),
    (_with(TOY_CELL_NET, ("width",), 0), "width"),
    (_with(TOY_CELL_NET, ("depth",), "14"), "depth"),
    (_with(TOY_CELL_NET, ("genotype",), "DARTS"), "genotype"),
    (_with(ANYNET, ("block_type",), "inverted_block"), "inverted_block"),
    (_with(ANYNET, ("ws",), [32, 64]), "lengths"),
    (_with(ANYNET, ("ss",), [3, 1, 2]), "stem stride"),
    (_with(ANYNET, ("num_gs",), [1, 3, 4]), "divisible"),
    (_with(ANYNET, ("bot_muls",), []), "bot_muls"),
    ({"width": 8}, "genotype"),
    ([["sep_conv_3x3", 0]], "dict"),
])
def test_malformed_net_raises(net: object, match: str) -> None:
    with pytest.raises(EznasError, match=match):
        nds.build(net, imagenet=True, num_classes=1000, where="test entry")


def test_error_names_the_entry() -> None:
    bad = _with(TOY_CELL_NET, ("genotype", "normal", 0), ["warp_drive", 0])
    with pytest.raises(EznasError, match=r"^DARTS_in\.json entry 7: unknown op 'warp_drive'"):
        nds.build(bad, imagenet=True, num_classes=1000, where="DARTS_in.json entry 7")


def test_seeded_initialisation_is_reproducible() -> None:
    net_dict = TOY_CELL_NET
    if NDS_DIR is not None and (NDS_DIR / "DARTS_in.json").is_file():
        net_dict = _load(NDS_DIR / "DARTS_in.json")[0]["net"]
    state = [build_network("nds:DARTS_in", net_dict, seed=s).state_dict() for s in (3, 3, 4)]
    assert all(torch.equal(state[0][k], state[1][k]) for k in state[0])
    weights = [k for k in state[0] if k.endswith("weight") and state[0][k].dim() > 1]
    assert all(not torch.equal(state[0][k], state[2][k]) for k in weights)
