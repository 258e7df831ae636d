"""The published EZNAS proxy, EZNAS-A, implemented from its description.

EZNAS-A (Akhauri et al., NeurIPS 2022) is stated as: per layer, the Frobenius norm of
sigmoid(logdet(sign(gradient at the layer input))), averaged over layers. Our reading:

- *layer*: every call of an ``nn.Conv2d`` whose input maps are square (Linear layers are
  skipped: their input [N, F] is not a stack of matrices; so is the second half of a
  factorised 1 x k / k x 1 conv pair after a stride, as in NASNet, Amoeba and PNAS cells,
  whose input maps are not square and have no determinant). Each call's input is routed
  through a private view, so its gradient is that layer's share only, even when the tensor
  also feeds other layers.
- *gradient at the layer input*: ``G = dLoss/dX`` [N, C, H, W] with the mean cross-entropy on
  the batch's labels (as for the other gradient baselines), batch-norm on batch statistics.
- *logdet*: per sample and channel, ``log|det|`` of the [H, W] matrix ``sign(G[n, c])``
  (float64), so a singular sign matrix gives -inf and sigmoid 0.
- *Frobenius norm*: of the [N, C] matrix of sigmoids; the layer scores are averaged.

A public re-implementation (piconas) instead reads "gradient at the layer input" from a
deprecated module backward hook whose second entry is the weight gradient; we follow the
description, not that code.
"""

from __future__ import annotations

import torch
from torch import nn

from eznas.proxies._nets import cross_entropy
from eznas.proxies.registry import proxy


@proxy("eznas_a", version=2)
def eznas_a(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """EZNAS-A: mean over conv layers of ||sigmoid(log|det sign(dLoss/dX_l)|)||_F (Akhauri et al., NeurIPS 2022).

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : [N] labels.
    """
    taps: list[torch.Tensor] = []

    def tap(module: nn.Module, args: tuple) -> tuple:
        x = args[0].view_as(args[0])  # a node of its own: its gradient is this layer's share
        taps.append(x)
        return (x, *args[1:])

    handles = [m.register_forward_pre_hook(tap) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        loss = cross_entropy(net, inputs.detach().clone().requires_grad_(True), targets)
    finally:
        for handle in handles:
            handle.remove()
    taps = [x for x in taps if x.shape[-1] == x.shape[-2]]
    if not taps:
        raise ValueError("eznas_a needs at least one nn.Conv2d layer with square input maps")
    grads = torch.autograd.grad(loss, taps, allow_unused=True)
    scores = []
    for x, g in zip(taps, grads):
        signs = torch.zeros_like(x, dtype=torch.float64) if g is None else torch.sign(g).double()
        logabsdet = torch.linalg.slogdet(signs).logabsdet  # [N, C]
        scores.append(torch.linalg.vector_norm(torch.sigmoid(logabsdet)))
    return float(torch.stack(scores).mean())
