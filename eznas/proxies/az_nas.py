"""AZ-NAS (Lee & Ham, CVPR 2024): four component scores per network, ranked over a set.

Per network (`az_nas`), on the outputs ``X_0..X_B`` of its primary blocks (`blocks`):

- expressivity: ``sum_b H_b``, where ``H_b`` is the entropy of the normalised eigenvalues of
  the channel covariance of ``X_b`` (rows = samples x positions, [N*H*W, C]);
- progressivity: ``min_b (H_b - H_{b-1})``;
- trainability: mean over consecutive block pairs of ``2 - s - 1/s``, where ``s`` is the
  spectral norm of the channel-wise Jacobian estimate ``E[g_in g_out^T]`` obtained by
  back-propagating a Rademacher ``g_out`` from ``X_b`` to ``X_{b-1}`` (``g_in`` pixel-unshuffled
  when the block downsamples); a block that passes the gradient through unchanged gets -inf;
- complexity: FLOPs (multiply-accumulates, as the ``flops`` baseline).

Over a set of m networks (`rank_aggregate`): ``score = sum_k log(rank_k / m)``, with
``rank_k`` the ascending rank (ties averaged) of component k; a NaN component ranks lowest.

Deviations from the authors' code, for a common protocol: the network keeps its own
initialisation (the authors redraw Kaiming fan-in weights) and sees the shared real batch
(the authors default to Gaussian inputs); the Rademacher vectors come from a generator
seeded with `AZ_SEED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats as sps
from torch import nn

from eznas.proxies._nets import macs
from eznas.proxies.registry import proxy

COMPONENTS = ("expressivity", "progressivity", "trainability", "complexity")
AZ_SEED = 0
_EPS = 1e-8  # AZ-NAS's offsets inside log(p + eps) and 1 / (s + eps)


def blocks(net: nn.Module) -> list[nn.Module]:
    """The primary blocks of ``net`` in forward order.

    The stem, then every cell (``net.cells``: NB201 and NDS cell networks) or every block of
    every stage (``net.stages``: NDS AnyNet); for other networks, the direct children.
    """
    stem = [net.stem] if isinstance(getattr(net, "stem", None), nn.Module) else []
    if isinstance(getattr(net, "cells", None), nn.Module):
        return stem + list(net.cells.children())
    if isinstance(getattr(net, "stages", None), nn.Module):
        return stem + [b for stage in net.stages.children() for b in stage.children()]
    return list(net.children())


def _entropy(feature: torch.Tensor) -> float:
    """Entropy of the normalised eigenvalue spectrum of the channel covariance of [N, C, H, W]."""
    x = feature.detach().double().transpose(0, 1).flatten(1)  # [C, N*H*W]
    x = x - x.mean(1, keepdim=True)
    eig = torch.linalg.eigvalsh(x @ x.T / x.shape[1]).clamp_min(0.0)
    p = eig / eig.sum()
    return float(-(p * torch.log(p + _EPS)).sum())


def _trainability(f_in: torch.Tensor, f_out: torch.Tensor, gen: torch.Generator) -> float:
    """``2 - s - 1/s`` for the spectral norm ``s`` of the block's channel-wise Jacobian estimate."""
    g_out = (torch.randint(0, 2, tuple(f_out.shape), generator=gen, dtype=torch.int8) * 2 - 1)
    g_out = g_out.to(device=f_out.device, dtype=f_out.dtype)
    (g_in,) = torch.autograd.grad(f_out, f_in, grad_outputs=g_out, retain_graph=True, allow_unused=True)
    if g_in is None:
        g_in = torch.zeros_like(f_in)
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return -float("inf")
    if g_in.shape[-1] != g_out.shape[-1]:
        g_in = F.pixel_unshuffle(g_in, g_in.shape[-1] // g_out.shape[-1])
    rows = g_out.shape[0] * g_out.shape[2] * g_out.shape[3]
    a = g_in.double().transpose(0, 1).flatten(1)  # [C_in, rows]
    b = g_out.double().transpose(0, 1).flatten(1)  # [C_out, rows]
    jac = a @ b.T / rows
    gram = jac @ jac.T if jac.shape[0] <= jac.shape[1] else jac.T @ jac
    s = float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0).sqrt())
    return 2.0 - s - 1.0 / (s + _EPS)


def rank_aggregate(values: Sequence[Mapping[str, float]]) -> list[float]:
    """AZ-NAS non-linear rank aggregation ``sum_k log(rank_k / m)`` over m networks' components."""
    m = len(values)
    total = np.zeros(m)
    for key in COMPONENTS:
        column = np.array([v[key] for v in values], dtype=float)
        column[np.isnan(column)] = -np.inf
        total += np.log(sps.rankdata(column) / m)
    return total.tolist()


@proxy("az_nas", combine=rank_aggregate)
def az_nas(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """AZ-NAS: expressivity, progressivity, trainability, complexity, rank-aggregated (Lee & Ham, CVPR 2024).

    Parameters
    ----------
    net : the network (a private copy in probe mode).
    inputs : [N, 3, H, W] batch; targets : unused.

    Returns
    -------
    The four components by name (`COMPONENTS`); `rank_aggregate` turns those of a set of
    networks into scores.
    """
    features: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, out: torch.Tensor | tuple) -> None:
        features.append(out[-1] if isinstance(out, (tuple, list)) else out)

    handles = [b.register_forward_hook(keep) for b in blocks(net)]
    try:
        net(inputs.detach().clone().requires_grad_(True))  # every block output on the graph
    finally:
        for handle in handles:
            handle.remove()
    features = [f for f in features if f.dim() == 4]
    if len(features) < 2:
        raise ValueError(f"az_nas needs at least two blocks with 4-D outputs, found {len(features)}")
    entropies = np.array([_entropy(f) for f in features])
    gen = torch.Generator(device="cpu").manual_seed(AZ_SEED)
    train = [_trainability(features[i - 1], features[i], gen) for i in reversed(range(1, len(features)))]
    return {
        "expressivity": float(entropies.sum()),
        "progressivity": float(np.min(np.diff(entropies))),
        "trainability": float(np.mean(train)),
        "complexity": macs(net, inputs),
    }
