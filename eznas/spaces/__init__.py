"""Search spaces: build the exact benchmark network for an architecture of a task.

``build_network("nb201:cifar10", "|nor_conv_3x3~0|+|...|")`` or
``build_network("nds:DARTS_in", entry["net"])``. Initialisation is seeded and leaves the
global torch RNG untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from eznas.tasks import Task, parse_task


def build_network(task: str | Task, arch: Any, seed: int = 0, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the network of ``arch`` for ``task`` with weights drawn from ``seed``.

    Parameters
    ----------
    task : task id such as ``"nb201:cifar100"`` or ``"nds:ENAS_in"``.
    arch : an NB201 architecture string, or an NDS entry's ``net`` dict.
    seed : initialisation seed; the same seed gives bit-identical weights.
    device : where the parameters are created (``"meta"`` builds without memory).
    """
    t = parse_task(task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            if t.space == "nb201":
                from eznas.spaces import nb201

                return nb201.build(arch, num_classes=t.num_classes)
            from eznas.spaces import nds

            return nds.build(arch, imagenet=t.imagenet_layout, num_classes=t.num_classes)


def count_params(net: torch.nn.Module) -> int:
    """Number of trainable parameters (what NB201 and NDS report)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
