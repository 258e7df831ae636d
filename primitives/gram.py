"""Sample-by-sample kernels: AMat [L,N,F] -> Gram [L,N,N], as NASWOT and RCor build them."""

import math

import torch

from ._safe import TOL, _amax_scale, _finite


def corr(x: torch.Tensor) -> torch.Tensor:
    """AMat [L,N,F] -> Gram [L,N,N]: Pearson correlation of rows; constant row: 0, diagonal 1."""
    y = x / _amax_scale(x, (-2, -1))
    mean = y.mean(dim=-1, keepdim=True)
    norm = torch.linalg.vector_norm(y.sub_(mean), dim=-1, keepdim=True)
    constant = norm <= mean.abs_().mul_(TOL * math.sqrt(x.shape[-1]))
    y.div_(norm.masked_fill_(constant, math.inf))
    c = torch.matmul(y, y.mT).clamp_(-1.0, 1.0)
    c.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    return c


def gram_sign(x: torch.Tensor) -> torch.Tensor:
    """AMat [L,N,F] -> Gram [L,N,N]: fraction of features where two rows agree on x > 0."""
    s = (x > 0).to(x.dtype).mul_(2.0).sub_(1.0)
    return torch.matmul(s, s.mT).div_(2.0 * x.shape[-1]).add_(0.5)


def gram_linear(x: torch.Tensor) -> torch.Tensor:
    """AMat [L,N,F] -> Gram [L,N,N]: x x^T / F, clamped to +-BIG; 0 for a zero matrix."""
    scale = _amax_scale(x, (-2, -1))
    y = x / scale
    return _finite(torch.matmul(y, y.mT).mul_(scale).mul_(scale / x.shape[-1]))
