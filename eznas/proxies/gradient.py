"""Gradient baselines: grad_norm, snip, grasp, fisher, synflow and zico.

Conventions (Abdelfattah et al., ICLR 2021, whose definitions these follow): one minibatch,
mean cross-entropy loss on its labels, batch-norm on batch statistics (the registry's probe
mode), scores summed over every Conv2d and Linear weight. Synflow is the exception: it sees no
data, no norm layers and no labels (see its docstring).
"""

from __future__ import annotations

import torch
from torch import nn

from eznas.proxies._nets import cross_entropy, logits, strip_norms, weight_grads, weight_layers
from eznas.proxies.registry import proxy


@proxy("grad_norm")
def grad_norm(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Sum over layers of the L2 norm of dLoss/dW (Abdelfattah et al., ICLR 2021).

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : [N] labels.
    """
    _, grads = weight_grads(net, inputs, targets)
    return float(sum(torch.linalg.vector_norm(g.double()) for g in grads))


@proxy("snip")
def snip(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """SNIP saliency sum |W * dLoss/dW| (Lee et al., ICLR 2019; as scored by Abdelfattah et al., ICLR 2021).

    ``|dLoss/dmask|`` of a multiplicative all-ones weight mask equals ``|W * dLoss/dW|``, so no
    mask is inserted.

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : [N] labels.
    """
    layers, grads = weight_grads(net, inputs, targets)
    return float(sum((m.weight.detach() * g).abs().double().sum() for m, g in zip(layers, grads)))


@proxy("grasp")
def grasp(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """GraSP score sum -W * (H g) (Wang et al., ICLR 2020; as scored by Abdelfattah et al., ICLR 2021).

    ``g = dLoss/dW`` and ``H g`` is the Hessian-gradient product, obtained by differentiating
    ``sum(stop_gradient(g) * g)`` with respect to the weights (one forward pass).

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : [N] labels.
    """
    layers, grads = weight_grads(net, inputs, targets, create_graph=True)
    weights = [m.weight for m in layers]
    linked = [i for i, g in enumerate(grads) if g.requires_grad]
    if not linked:
        return 0.0
    inner = sum((grads[i].detach() * grads[i]).sum() for i in linked)
    hg = torch.autograd.grad(inner, [weights[i] for i in linked], allow_unused=True)
    return float(sum((-weights[i].detach() * h).double().sum()
                     for i, h in zip(linked, hg) if h is not None))


@proxy("fisher")
def fisher(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fisher channel saliency (Turner et al., ICLR 2020; as scored by Abdelfattah et al., ICLR 2021).

    Per output channel ``c`` of every Conv2d/Linear call with output ``A`` [N, C, H, W] (or
    [N, C]) and ``G = dLoss/dA``: ``0.5 * mean_n (sum_hw A * G)^2``, summed over channels and
    layers.

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : [N] labels.
    """
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        outputs.append(out)

    handles = [m.register_forward_hook(keep) for m in weight_layers(net)]
    try:
        loss = cross_entropy(net, inputs, targets)
    finally:
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for act, grad in zip(outputs, grads):
        if grad is None:
            continue
        prod = (act.detach() * grad).double()
        per_channel = prod.flatten(2).sum(2) if prod.dim() > 2 else prod
        total += 0.5 * per_channel.square().mean(0).sum()
    return float(total)


@proxy("synflow")
def synflow(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """SynFlow sum W * dR/dW with R = sum(f(1)) of the |W| network (Tanaka et al., NeurIPS 2020).

    Conventions (Abdelfattah et al., ICLR 2021): norm layers removed (identity), every
    parameter replaced by its absolute value, float64 throughout, one all-ones input of the
    batch's sample shape [1, 3, H, W]; the labels are not used. Done on the private copy.

    Parameters
    ----------
    net : the network (a private copy; its norms, dtype and signs are changed in place).
    inputs : [N, 3, H, W]; only its sample shape matters.
    targets : unused.
    """
    strip_norms(net).double()
    with torch.no_grad():
        for param in net.parameters():
            param.abs_()
    weights = [m.weight for m in weight_layers(net)]
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    total = logits(net(ones)).sum()
    grads = torch.autograd.grad(total, weights, allow_unused=True)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads) if g is not None))


@proxy("zico")
def zico(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """ZiCo: sum over layers of log sum_theta mean|g| / std(g) (Li et al., ICLR 2023).

    The gradient statistics are taken over the two halves of the batch (two backward passes,
    as in the alethiometer implementation); weights whose gradient has zero standard deviation
    are skipped, and so are layers whose sum is zero.

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch (N >= 2); targets : [N] labels.
    """
    half = len(inputs) // 2
    if half == 0:
        raise ValueError("zico needs a batch of at least 2 samples")
    parts = [weight_grads(net, inputs[s], targets[s])[1] for s in (slice(0, half), slice(half, None))]
    total = 0.0
    for per_part in zip(*parts):
        g = torch.stack([p.detach().double().flatten() for p in per_part])
        std = g.std(0, unbiased=False)
        live = std > 0
        ratio = (g.abs().mean(0)[live] / std[live]).sum()
        if ratio > 0:
            total += float(torch.log(ratio))
    return total
