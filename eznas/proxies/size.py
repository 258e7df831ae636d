"""Size baselines: parameter count and FLOPs (no data needed beyond the input shape)."""

from __future__ import annotations

import torch
from torch import nn

from eznas.proxies._nets import macs
from eznas.proxies.registry import proxy
from eznas.spaces import count_params


@proxy("params")
def params(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Trainable parameter count (size baseline of Abdelfattah et al., ICLR 2021).

    Parameters
    ----------
    net : the network (a private copy).
    inputs, targets : unused.
    """
    return float(count_params(net))


@proxy("flops")
def flops(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Multiply-accumulates per sample (FLOPs baseline of Abdelfattah et al., ICLR 2021).

    Every Conv2d/Linear call counts ``output elements x fan-in`` (biases, norms, pooling and
    element-wise ops are not counted), exactly as the probe's ``log_flops``.

    Parameters
    ----------
    net : the network (a private copy).
    inputs : [N, 3, H, W]; only its shape matters.
    targets : unused.
    """
    return macs(net, inputs)
