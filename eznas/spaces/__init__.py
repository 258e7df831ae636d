"""Search spaces: build the exact benchmark network for an architecture of a task.

``build_network("nb201:cifar10", "|nor_conv_3x3~0|+|...|")``,
``build_network("nds:DARTS_in", entry["net"])``, or ``build_network("nb101:cifar10", key)`` /
``build_network("nb301:cifar10", key)`` with a NASLib key string. Initialisation is seeded and
leaves the global torch RNG untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from eznas.tasks import Task, parse_task


def build_network(task: str | Task, arch: Any, seed: int = 0, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the network of ``arch`` for ``task`` with weights drawn from ``seed``.

    Parameters
    ----------
    task : task id such as ``"nb201:cifar100"``, ``"nds:ENAS_in"`` or ``"nb101:cifar10"``.
    arch : an NB201 architecture string, an NDS entry's ``net`` dict, or an NB101 / NB301
        NASLib key string (a record's ``arch``).
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
            if t.user is not None:
                return t.user.build(arch, t.num_classes)
            if t.space == "nb101":
                from eznas.spaces import nb101

                return nb101.build(arch, num_classes=t.num_classes)
            if t.space == "nb301":
                from eznas.spaces import nb301

                return nb301.build(arch, num_classes=t.num_classes)
            from eznas.spaces import nds

            return nds.build(arch, imagenet=t.imagenet_layout, num_classes=t.num_classes)


def count_params(net: torch.nn.Module) -> int:
    """Number of trainable parameters (what NB201, NDS and the NB101/NB301 samples report)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
