"""Activation baselines: jacob_cov, naswot and zen (forward passes; jacob_cov also an input gradient).

All run on the registry's private copy in probe mode (batch-norm on batch statistics).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eznas.proxies._nets import logits, weight_layers
from eznas.proxies.registry import proxy

JACOB_COV_K = 1e-5  # eigenvalue offset of Mellor et al.'s score
ZEN_GAMMA = 1e-2  # Zen-NAS perturbation scale
ZEN_SEED = 0  # seed of Zen's Gaussian weights and inputs (the global RNG is never used)


@proxy("jacob_cov")
def jacob_cov(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Jacobian covariance score (Mellor et al., arXiv:2006.04647v1, 2020; as scored by Abdelfattah et al., ICLR 2021).

    ``J`` [N, 3*H*W] holds d(sum of all logits)/d(input) per sample; with the eigenvalues ``v``
    of its [N, N] row correlation matrix the score is ``-sum(log(v + k) + 1 / (v + k))``,
    ``k = 1e-5`` (computed in float64).

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : unused.
    """
    x = inputs.detach().clone().requires_grad_(True)
    (jac,) = torch.autograd.grad(logits(net(x)).sum(), x)
    corr = torch.corrcoef(jac.flatten(1).double())
    if not bool(torch.isfinite(corr).all()):  # a sample with a constant Jacobian: undefined
        return math.nan
    eig = torch.linalg.eigvalsh(corr)
    return float(-(torch.log(eig + JACOB_COV_K) + 1.0 / (eig + JACOB_COV_K)).sum())


@proxy("naswot")
def naswot(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """NASWOT log|det K| of the ReLU activation-pattern kernel (Mellor et al., ICML 2021).

    Each ``nn.ReLU`` call adds ``c c^T + (1 - c)(1 - c)^T`` to ``K`` [N, N], where ``c`` [N, D] is
    the binary code (unit active or not) of its D units; ReLUs applied as functions are not
    seen. ``K`` is accumulated and its log-determinant taken in float64.

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : unused.
    """
    n = len(inputs)
    kernel = torch.zeros(n, n, dtype=torch.float64, device=inputs.device)

    def count(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        codes = (out.detach().flatten(1) > 0).float()  # [N, D]; counts below 2**24 are exact in float32
        active = codes.sum(1, dtype=torch.float64)
        both = (codes @ codes.T).double()
        # c c^T + (1 - c)(1 - c)^T = 2 c c^T - s_i - s_j + D, with s the active count per sample
        kernel.add_(2.0 * both - active[:, None] - active[None, :] + codes.shape[1])

    handles = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


@proxy("zen", version=2)
def zen(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Zen-score log E_n||f(x) - f(x + 0.01 e)||_1 + sum_BN log sigma_BN (Lin et al., ICCV 2021).

    As Zen-NAS prescribes, the private copy's Conv2d/Linear weights are redrawn from N(0, 1)
    (biases zero, norm affine parameters 1 and 0) and ``x``, ``e`` are Gaussian inputs of the
    batch's shape, all from a generator seeded with `ZEN_SEED`. ``f`` is the input of the
    network's last ``nn.AdaptiveAvgPool2d`` (the pre-GAP feature map). ``sigma_BN`` is
    ``sqrt(mean over channels of running_var)`` of each batch-norm layer after the two forward
    passes (in training mode), as the authors' code reads it: with the default momentum 0.1 the
    batch variances are blended into the initial running variance, so a layer whose input is
    constant (a zero branch) still contributes a finite term. The real images and labels are
    not used.

    Parameters
    ----------
    net : the network (a private copy in probe mode; its weights and running statistics change).
    inputs : [N, 3, H, W]; only its shape, dtype and device matter.
    targets : unused.
    """
    gen = torch.Generator(device="cpu").manual_seed(ZEN_SEED)

    def gaussian(shape: torch.Size) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=gen).to(device=inputs.device, dtype=inputs.dtype)

    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    with torch.no_grad():
        for m in weight_layers(net):
            m.weight.copy_(gaussian(m.weight.shape))
            if m.bias is not None:
                m.bias.zero_()
        for m in norms:
            if m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    pools = [m for m in net.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise ValueError("zen needs an nn.AdaptiveAvgPool2d (global average pool) to find the pre-GAP features")
    features: list[torch.Tensor] = []
    handle = pools[-1].register_forward_pre_hook(lambda module, args: features.append(args[0]))
    x = gaussian(inputs.shape)
    x_mixed = x + ZEN_GAMMA * gaussian(inputs.shape)
    try:
        with torch.no_grad():
            net(x)
            clean = features[-1]
            net(x_mixed)
    finally:
        handle.remove()
    delta = (clean - features[-1]).abs().flatten(1).sum(1).mean()
    log_sigmas = [0.5 * float(torch.log(m.running_var.double().mean())) for m in norms if m.running_var is not None]
    return float(torch.log(delta)) + sum(log_sigmas)  # -inf when the features ignore the input
