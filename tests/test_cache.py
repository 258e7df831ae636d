"""Tests for `eznas.cache`: keys, bit-identical round trips, corrupt files, atomic writes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from eznas.cache import CacheWarning, StatsCache, canonical_json, stats_key
from eznas.errors import EznasError
from eznas.probe import PROBE_VERSION, NetworkStats, ProbeSettings, probe

ARCH = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")


def mid_net() -> nn.Module:
    """A small CIFAR-sized conv net (about 0.3 M parameters)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    channels = [3, 32, 64, 64, 128, 128]
    for i, (cin, cout) in enumerate(zip(channels, channels[1:])):
        layers += [nn.Conv2d(cin, cout, 3, stride=2 if i in (1, 3) else 1, padding=1, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)]
    return nn.Sequential(*layers)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(64, 3, 32, 32, generator=gen), torch.randint(0, 10, (64,), generator=gen)


@pytest.fixture(scope="module")
def stats() -> NetworkStats:
    return probe(mid_net(), *batch())


def key_of(**changes) -> str:
    parts = dict(task="nb201:cifar10", arch=ARCH, seed=0,
                 batch={"images": "cifar10", "n": 64, "seed": 0}, settings=ProbeSettings())
    parts.update(changes)
    return stats_key(**parts)


def test_keys_change_with_everything_that_changes_the_numbers() -> None:
    base = key_of()
    assert base == key_of() and len(base) == 64
    variants = [
        key_of(task="nb201:cifar100"),
        key_of(arch=ARCH.replace("skip_connect~2", "none~2")),
        key_of(arch={"genotype": {"normal": [["skip_connect", 0]]}, "width": 16}),
        key_of(seed=1),
        key_of(batch={"images": "cifar10", "n": 32, "seed": 0}),
        key_of(settings=ProbeSettings(features=128)),
        key_of(settings=ProbeSettings(hessian_probes=2)),
        key_of(settings=ProbeSettings(loss="logit_sum")),
        key_of(settings=ProbeSettings(max_layers=None)),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # dict order does not matter; the probe version is part of the key
    assert key_of(batch={"seed": 0, "n": 64, "images": "cifar10"}) == base
    assert f'"probe_version":{PROBE_VERSION}' in canonical_json({"task": "x"})
    with pytest.raises(TypeError, match="cannot encode"):
        stats_key(arch=object())


def _meta(path: Path) -> dict:
    """The ``meta`` a stats file was saved with (read through safetensors' own header API)."""
    with safe_open(path, framework="pt") as f:
        return json.loads(f.metadata()["eznas"])["meta"]


def test_round_trip_is_bit_identical(tmp_path: Path, stats: NetworkStats) -> None:
    cache = StatsCache(tmp_path)
    key = key_of()
    assert cache.load(key) is None and key not in cache
    path = cache.save(key, stats, {"arch": ARCH, "accuracy": 93.66})
    assert path == cache.path(key) and path.is_file() and key in cache
    loaded = cache.load(key)
    assert loaded is not None
    assert loaded.layers.keys() == stats.layers.keys()
    for name, tensor in stats.layers.items():
        got = loaded.layers[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape
        assert torch.equal(got.view(torch.int32), tensor.view(torch.int32)), name
    assert loaded.net == stats.net
    assert _meta(path) == {"arch": ARCH, "accuracy": 93.66}
    assert cache.load(key_of(seed=9)) is None
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign"])
def test_corrupt_file_warns_and_reads_as_missing(tmp_path: Path, stats: NetworkStats,
                                                 damage: str) -> None:
    cache = StatsCache(tmp_path)
    key = key_of()
    path = cache.save(key, stats, {})
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00not a safetensors file" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid safetensors file that is not ours
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(3)}, str(path))
    with pytest.warns(CacheWarning, match=str(path.name)):
        assert cache.load(key) is None
    # the caller recomputes and overwrites
    cache.save(key, stats, {})
    assert cache.load(key).net == stats.net


@pytest.mark.parametrize("damage, reason", [
    ("flip", "does not match its checksum"),  # one data byte changed, the file still parses
    ("nan", "is not finite"),  # NaNs written with a checksum that matches them
    ("shape", "expected [L, 64, 64]"),  # a layer tensor of another shape than the probe settings give
    ("no_depth", "layer tensors missing"),
])
def test_damaged_content_warns_and_reads_as_missing(tmp_path: Path, stats: NetworkStats, damage: str,
                                                    reason: str) -> None:
    cache = StatsCache(tmp_path)
    key = key_of()
    if damage == "nan":
        stats = NetworkStats({**stats.layers, "A": torch.full_like(stats.layers["A"], math.nan)}, stats.net)
    elif damage == "shape":
        stats = NetworkStats({**stats.layers, "KA": stats.layers["KA"][:, :4, :4].contiguous()}, stats.net)
    elif damage == "no_depth":
        stats = NetworkStats({k: v for k, v in stats.layers.items() if k != "depth"}, stats.net)
    path = cache.save(key, stats, {})
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[-5] ^= 0x40
        path.write_bytes(bytes(data))
    shapes = {"KA": (stats.layers["A"].shape[1],) * 2}
    with pytest.warns(CacheWarning, match=re.escape(reason)):
        assert cache.load(key, shapes) is None


def test_failed_write_leaves_no_temp_file_and_keeps_the_old_one(
        tmp_path: Path, stats: NetworkStats, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = StatsCache(tmp_path)
    path = cache.save(key_of(), stats, {"version": "old"})
    with pytest.raises(TypeError):
        cache.save(key_of(), stats, {"bad": object()})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("eznas.files.os.replace", broken_replace)
    with pytest.raises(EznasError, match=f"cannot write {path}: .*check the cache directory"):
        cache.save(key_of(), stats, {"version": "new"})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [path]
    assert _meta(path) == {"version": "old"}


def test_default_root_and_key_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EZNAS_CACHE_DIR", str(tmp_path / "c"))
    assert StatsCache().root == tmp_path / "c"
    monkeypatch.delenv("EZNAS_CACHE_DIR")
    assert StatsCache().root == Path(".eznas_cache")
    with pytest.raises(ValueError, match="not a sha256"):
        StatsCache(tmp_path).path("../../etc/passwd")
