"""Ground truth, task ids, data lookup and input batches."""

from __future__ import annotations

import json

import pytest
import torch

from eznas import benchmarks, datadir, inputs
from eznas.errors import EznasError
from eznas.tasks import parse_task

from conftest import needs_data


@needs_data
def test_nb201_ground_truth_spot_checks(data_dir):
    records = benchmarks.load_task("nb201:cifar10", data_dir)
    assert len(records) == 15625
    best = max(records, key=lambda r: r["accuracy"])
    assert best["index"] == 6111 and round(best["accuracy"], 2) == 94.37
    c100 = benchmarks.load_task("nb201:cifar100", data_dir)
    assert max(range(15625), key=lambda i: c100[i]["accuracy"]) == 9930
    assert [r["arch"] for r in c100] == [r["arch"] for r in records]


@needs_data
def test_nds_accuracy_is_100_minus_final_top1_error(data_dir):
    raw = json.loads((data_dir / "nds" / "ENAS_in.json").read_text())
    records = benchmarks.load_task("nds:ENAS_in", data_dir)
    assert len(records) == len(raw) == 117
    for r, e in zip(records, raw):
        assert r["accuracy"] == pytest.approx(100.0 - e["test_ep_top1"][-1])
        assert r["arch"] == e["net"] and r["params"] == e["params"]


@needs_data
def test_index_and_string_round_trip(data_dir):
    for i in (0, 6111, 15624):
        assert benchmarks.arch_index(benchmarks.arch_string(i, data_dir), data_dir) == i


@needs_data
def test_sample_is_deterministic_and_respects_exclusions(data_dir):
    a = benchmarks.sample("nb201:cifar10", 50, 3, data_dir)
    b = benchmarks.sample("nb201:cifar10", 50, 3, data_dir)
    c = benchmarks.sample("nb201:cifar10", 50, 4, data_dir)
    assert [r["index"] for r in a] == [r["index"] for r in b] != [r["index"] for r in c]
    excluded = {r["index"] for r in a}
    d = benchmarks.sample("nb201:cifar10", 500, 3, data_dir, exclude=excluded)
    assert not excluded & {r["index"] for r in d}
    assert len(benchmarks.sample("nds:DARTS_in", 10_000, 0, data_dir)) == 121


def test_unknown_tasks_are_clear_errors():
    for bad in ("nb201", "nb201:cifar1000", "foo:bar", "nds:", ":x", "nds:../etc", "nb101", "nb101:cifar100",
                "nb301:", "nb301:CIFAR10"):
        with pytest.raises(EznasError, match="unknown task"):
            parse_task(bad)
    with pytest.raises(EznasError, match="'nb201', 'nds', 'nb101', 'nb301' or 'user'"):
        parse_task("nb102:cifar10")
    with pytest.raises(EznasError, match="'nb101:cifar10' or 'nb301:cifar10'"):
        parse_task("cifar10")
    t = parse_task("nds:DARTS")
    assert (t.num_classes, t.resolution) == (10, 32)
    assert parse_task("nb201:ImageNet16-120").resolution == 16
    for space in ("nb101", "nb301"):
        t = parse_task(f"{space}:cifar10")
        assert (t.space, t.key, t.num_classes, t.resolution, t.images) == (space, "cifar10", 10, 32, "cifar10")
        assert not t.imagenet_layout


@needs_data
@pytest.mark.parametrize("space, name", [("nb101", "nasbench101"), ("nb301", "nasbench301")])
def test_naslib_records_are_the_file_in_order(space, name, data_dir):
    assert benchmarks.task_file(f"{space}:cifar10") == f"naslib/zc_{name}.json"
    entries = json.loads((data_dir / "naslib" / f"zc_{name}.json").read_text())[name]["cifar10"]
    records = benchmarks.load_task(f"{space}:cifar10", data_dir)
    assert len(records) == len(entries) == 500
    for r, (key, e) in zip(records, entries.items()):
        assert set(r) == {"index", "arch", "accuracy", "params", "flops", "zc"}
        assert r["arch"] == key and r["accuracy"] == e["val_accuracy"]
        assert r["params"] == round(e["params"] * 1e6) and type(r["params"]) is int
        assert r["flops"] == round(e["flops"] * 1e6) and type(r["flops"]) is int
        assert r["zc"] == {k: v for k, v in e.items() if k not in ("val_accuracy", "params", "flops")}
    assert [r["index"] for r in records] == list(range(500))
    assert set(records[0]["zc"]) >= {"synflow", "snip", "grad_norm", "fisher", "grasp", "jacov"}
    records[0]["zc"]["synflow"] = None  # callers get copies: the cached records stay intact
    assert benchmarks.load_task(f"{space}:cifar10", data_dir)[0]["zc"]["synflow"] is not None


@needs_data
def test_truncated_or_foreign_naslib_files_are_clear_errors(data_dir, tmp_path):
    (tmp_path / "naslib").mkdir()
    target = tmp_path / "naslib" / "zc_nasbench101.json"
    target.write_text((data_dir / "naslib" / "zc_nasbench101.json").read_text()[:5000])
    with pytest.raises(EznasError, match="zc_nasbench101.json: malformed JSON"):
        benchmarks.load_task("nb101:cifar10", tmp_path)
    target.write_text(json.dumps({"nasbench201": {"cifar10": {}}}))
    with pytest.raises(EznasError, match=r"no architectures under \['nasbench101'\]\['cifar10'\]"):
        benchmarks.load_task("nb101:cifar10", tmp_path)
    target.write_text(json.dumps({"nasbench101": {"cifar10": {"(0,)": {"params": 1.0, "flops": 2.0}}}}))
    with pytest.raises(EznasError, match=r"entry 0 \(\(0,\)\) lacks a number for one of val_accuracy"):
        benchmarks.load_task("nb101:cifar10", tmp_path)


def test_missing_data_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(datadir.ENV_VAR, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EznasError) as e:
        datadir.find("nb201/nats_bench.csv")
    msg = str(e.value)
    assert "\n" not in msg
    for place in (str(tmp_path / "env"), "data/nb201", "shared/data/nb201"):
        assert place in msg


@needs_data
def test_truncated_files_are_clear_errors(data_dir, tmp_path):
    (tmp_path / "nb201").mkdir()
    text = (data_dir / "nb201" / "nats_bench.csv").read_text()
    (tmp_path / "nb201" / "nats_bench.csv").write_text(text[: len(text) // 3])
    with pytest.raises(EznasError, match="nats_bench.csv"):
        benchmarks.load_task("nb201:cifar10", tmp_path)
    (tmp_path / "nds").mkdir()
    raw = (data_dir / "nds" / "PNAS_in.json").read_text()
    (tmp_path / "nds" / "PNAS_in.json").write_text(raw[:5000])
    with pytest.raises(EznasError, match="malformed JSON"):
        benchmarks.load_task("nds:PNAS_in", tmp_path)


@needs_data
def test_real_batches_are_seeded_normalised_and_resized(data_dir):
    x, y = inputs.batch("nb201:cifar10", 64, 0, data_dir=data_dir)
    x2, y2 = inputs.batch("nb201:cifar10", 64, 0, data_dir=data_dir)
    x3, _ = inputs.batch("nb201:cifar10", 64, 1, data_dir=data_dir)
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, x2) and torch.equal(y, y2) and not torch.equal(x, x3)
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3
    assert y.max() < 10
    xi, yi = inputs.batch("nb201:ImageNet16-120", 16, 0, data_dir=data_dir)
    assert xi.shape == (16, 3, 16, 16) and yi.max() < 120
    xn, _ = inputs.batch("nds:DARTS_in", 8, 0, data_dir=data_dir)
    assert xn.shape == (8, 3, 64, 64)
    noise, labels = inputs.batch("nds:DARTS_in", 8, 0, kind="noise")
    assert noise.shape == (8, 3, 64, 64) and labels.max() < 1000
    with pytest.raises(EznasError):
        inputs.batch("nb201:cifar10", 8, 0, kind="pink", data_dir=data_dir)


def test_task_families_group_search_spaces():
    from eznas.tasks import family

    assert family("nb201:cifar100") == "nb201"
    assert {family(f"nds:{k}") for k in ("DARTS_in", "ENAS_in", "PNAS", "Amoeba_in")} == {"nds-cell"}
    assert {family(f"nds:{k}") for k in ("ResNeXt-A_in", "ResNeXt-B", "ResNet_lr-wd_in", "Vanilla")} == {"nds-anynet"}
