"""Network helpers shared by the baselines: weight layers, logits, cross-entropy gradients, MACs.

The baselines call these on the private copy `registry.Baseline` hands them, so helpers that
modify a network (`strip_norms`) only ever modify that copy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eznas.probe import ProbeSettings, logits_of, probe

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def weight_layers(net: nn.Module) -> list[nn.Module]:
    """The Conv2d and Linear modules of ``net`` in registration order (``requires_grad`` switched on)."""
    layers = [m for m in net.modules() if isinstance(m, WEIGHT_LAYERS)]
    for m in layers:
        m.weight.requires_grad_(True)
    return layers


def logits(output: object) -> torch.Tensor:
    """The logits [N, classes] of a forward output, by the probe's convention (`eznas.probe.logits_of`:
    a tensor, the last element of a tuple or list, a dict's ``"logits"`` or ``"out"`` entry)."""
    return logits_of(output)


def cross_entropy(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``net`` on the batch (a scalar on the autograd graph)."""
    return F.cross_entropy(logits(net(inputs)), targets)


def weight_grads(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 create_graph: bool = False) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """Conv/Linear layers and dLoss/dW of each ([out, in/groups, kh, kw] or [out, in]).

    Weights the loss does not reach get zero gradients.
    """
    layers = weight_layers(net)
    weights = [m.weight for m in layers]
    grads = torch.autograd.grad(cross_entropy(net, inputs, targets), weights,
                                create_graph=create_graph, allow_unused=True)
    return layers, [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


def macs(net: nn.Module, inputs: torch.Tensor) -> float:
    """Multiply-accumulates of every Conv2d/Linear call for one sample, as `eznas.probe` counts them.

    Counted on the first two samples of ``inputs`` (the count does not depend on the batch).
    """
    x = inputs[:2]
    stats = probe(net, x, torch.zeros(len(x), dtype=torch.long, device=x.device),
                  ProbeSettings(features=1, weight_rows=1, weight_cols=1), needs=("log_params",))
    return float(round(math.exp(stats.net["log_flops"])))


def strip_norms(net: nn.Module) -> nn.Module:
    """Replace every batch-norm / instance-norm module of ``net`` by `nn.Identity`, in place."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._NormBase):
                setattr(module, name, nn.Identity())
    return net
