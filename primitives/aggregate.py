"""Aggregators: per-layer values -> one number per network, through `Layers.seg`,
and `layer_delta`, the one per-layer operation that needs to know where each network starts.

Every function takes ``(x, layers)`` and reduces all networks at once with
index_add / scatter_reduce; a network without layers gets 0.
"""

import torch

from ._safe import EPS, _finite
from .layers import Layers
from .reductions import logdet


def _seg_sum(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """[L, ...] -> [B, ...]: sum over each network's layers, clamped to +-BIG."""
    out = x.new_zeros((layers.n_nets,) + tuple(x.shape[1:]))
    return _finite(out.index_add_(0, layers.seg, x))


def _seg_count(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """-> [B]: number of layers of each network as x's dtype, at least 1."""
    return torch.bincount(layers.seg, minlength=layers.n_nets).to(x.dtype).clamp_min_(1.0)


def agg_sum(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> NScalar [B]: sum over each network's layers, clamped to +-BIG."""
    return _seg_sum(x, layers)


def agg_mean(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> NScalar [B]: mean over each network's layers."""
    return _seg_sum(x, layers).div_(_seg_count(x, layers))


def agg_max(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> NScalar [B]: largest value over each network's layers."""
    return x.new_zeros(layers.n_nets).scatter_reduce_(0, layers.seg, x, "amax", include_self=False)


def agg_min(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> NScalar [B]: smallest value over each network's layers."""
    return x.new_zeros(layers.n_nets).scatter_reduce_(0, layers.seg, x, "amin", include_self=False)


def agg_std(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> NScalar [B]: population std over each network's layers; 0 for one layer."""
    deviation = x - agg_mean(x, layers)[layers.seg]
    variance = _seg_sum(_finite(deviation.square_()), layers).div_(_seg_count(x, layers))
    return _finite(variance.sqrt_())


def agg_depth_mean(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> NScalar [B]: depth-weighted mean; plain mean where the depths sum to 0."""
    weight = _seg_sum(layers.depth, layers)
    weighted = _seg_sum(x * layers.depth, layers).div_(weight.clamp_min(EPS))
    return torch.where(weight > EPS, weighted, agg_mean(x, layers))


def logdet_sum(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """Gram [L,N,N] -> NScalar [B]: logdet of the sum of each network's Gram matrices (RCor)."""
    return logdet(_seg_sum(x, layers))


def layer_delta(x: torch.Tensor, layers: Layers) -> torch.Tensor:
    """LScalar [L] -> LScalar [L]: each layer's value minus the previous layer's of its network; 0 for a first layer."""
    previous = torch.cat([x[:1], x[:-1]])
    first = torch.cat([layers.seg.new_ones(1, dtype=torch.bool), layers.seg[1:] != layers.seg[:-1]])
    return _finite(x - previous).masked_fill_(first, 0.0)
