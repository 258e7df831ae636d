"""The job layer's devices, checked on the CPU: a job takes its device on its worker (``cuda:K``
round-robin by slot, faked here by a device count, else the CPU), puts its network and batch
there, and results computed on a non-CPU device are filed apart from CPU ones (whose cache keys
and files stay as they were)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import needs_data
from eznas.fitness import Evaluator
from eznas.jobs import device_kind, job_device
from eznas.netjob import network_and_batch
from eznas.parallel import Parallel, run_tasks
from eznas.pool import network_key, network_meta
from eznas.probe import ProbeSettings
from eznas.proxy_spec import resolve
from eznas.scores import ScoreCache
from eznas.spaces import build_network
from eznas.statsbatch import StatsBatch

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
CPU_KEY = "32f3a340f4a673f9d4ce96a21082450fc26f5424e9ea8e6d6710360c52b19fa9"  # computed before devices entered keys


def test_jobs_take_a_device_of_the_callers_kind_by_worker_slot(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_kind() == "cuda"
    jobs = [(job_device, ("cuda",))] * 6 + [(job_device, ("cpu",))]
    devices = list(run_tasks(jobs, Parallel(backend="threading", jobs=2)))
    assert set(devices[:6]) <= {"cuda:0", "cuda:1"} and devices[6] == "cpu"
    assert list(run_tasks([(job_device, ("cuda",))] * 2, Parallel(backend="sequential"))) == ["cuda:0"] * 2
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert device_kind() == "cpu"
    with pytest.raises(RuntimeError, match="this worker has no cuda device"):
        job_device("cuda")


@needs_data
def test_a_job_puts_its_network_and_batch_on_its_device(data_dir):
    net, x, y = network_and_batch("nb201:cifar10", ARCH, 0, 4, 0, "real", str(data_dir), "meta")
    assert {p.device.type for p in net.parameters()} == {"meta"} and x.device.type == y.device.type == "meta"
    net, x, y = network_and_batch("nb201:cifar10", ARCH, 0, 4, 0, "real", str(data_dir), "cpu")
    reference = build_network("nb201:cifar10", ARCH, seed=0)  # the seed's weights, drawn on the CPU
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)


def test_cpu_statistics_keep_their_keys_and_gpu_ones_are_filed_apart(tmp_path):
    cfg = ProbeSettings()
    assert network_key("nb201:cifar10", ARCH, cfg) == network_key("nb201:cifar10", ARCH, cfg, "cpu") == CPU_KEY
    assert network_key("nb201:cifar10", ARCH, cfg, "cuda") != CPU_KEY
    assert network_meta("nb201:cifar10", ARCH) == {"task": "nb201:cifar10", "arch": ARCH}
    assert network_meta("nb201:cifar10", ARCH, "cuda")["device"] == "cuda"
    spec = resolve("params")
    cpu, gpu = (ScoreCache(tmp_path, spec, "nb201:cifar10", 0, 0, 64, kind) for kind in ("cpu", "cuda"))
    assert cpu.path == ScoreCache(tmp_path, spec, "nb201:cifar10", 0, 0, 64).path != gpu.path
    assert "device" not in cpu.header and gpu.header["device"] == "cuda"


def test_fitness_runs_on_the_device_of_the_statistics():
    seg = torch.tensor([0, 0, 1])
    batch = StatsBatch(layers={"depth": torch.tensor([0.0, 1.0, 0.0])}, net={"log_params": torch.tensor([2.0, 3.0])},
                       seg=seg, accuracy=np.array([1.0, 2.0]), task=np.array(["t", "t"], dtype=object),
                       index=np.array([0, 1]))
    assert batch.to("cpu") is batch
    assert batch.to("meta").seg.device.type == "meta" and batch.to("meta").net["log_params"].device.type == "meta"
    from eznas import gp as programs

    tree = programs.parse("n_add(log_params, agg_max(depth))")
    assert Evaluator.on_job_device(batch).safe_scores(tree).tolist() == [3.0, 3.0]
