"""The common start of every network job (statistics, proxy scores): the benchmark network and
its batch, placed on the job's device (which the job takes on its worker: `eznas.jobs.job_device`).

The network is built on the CPU under its seed and then moved, so a GPU job sees the very
weights a CPU job sees (CUDA's generator would draw others); the batch is drawn on the CPU and
moved likewise. Only the arithmetic that follows runs on the device.
"""

from __future__ import annotations

from typing import Any

import torch

from eznas import inputs
from eznas.spaces import build_network
from eznas.tasks import Task


def network_and_batch(task: str | Task, arch: Any, net_seed: int, batch_size: int, batch_seed: int,
                      input_kind: str, data_dir: str | None, device: str = "cpu",
                      ) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """``(net, inputs, targets)`` of ``arch`` on ``device`` (``"cpu"``, ``"cuda:K"``; ``"meta"`` in tests).

    The batch is ``inputs.batch(task, batch_size, batch_seed, input_kind, data_dir)``.
    """
    net = build_network(task, arch, seed=net_seed).to(device)
    x, y = inputs.batch(task, batch_size, batch_seed, input_kind, data_dir)
    return net, x.to(device), y.to(device)
