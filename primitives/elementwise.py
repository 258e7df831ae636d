"""Elementwise operations, generic over shape: registered once per type (w_, a_, l_, n_, gram_).

``T`` below is any of WMat [L,R,C], AMat [L,N,F], Gram [L,N,N], LScalar [L], NScalar [B];
binary operations take two tensors of the same type and shape. `znorm` normalises each
matrix of a matrix type. No function modifies its input.
"""

import math

import torch

from ._safe import EPS, MAX_EXP, TOL, _amax_scale, _finite


def absolute(x: torch.Tensor) -> torch.Tensor:
    """T -> T: |x|; exact for any finite input."""
    return torch.abs(x)


def square(x: torch.Tensor) -> torch.Tensor:
    """T -> T: x**2, clamped to BIG on overflow."""
    return _finite(x * x)


def sqrt_abs(x: torch.Tensor) -> torch.Tensor:
    """T -> T: sqrt(|x|); 0 at 0."""
    return torch.abs(x).sqrt_()


def log_abs(x: torch.Tensor) -> torch.Tensor:
    """T -> T: log(|x| + EPS); log(EPS) ~ -18.4 at 0."""
    return torch.abs(x).add_(EPS).log_()


def exp_clamped(x: torch.Tensor) -> torch.Tensor:
    """T -> T: exp(min(x, log BIG)); at most BIG, 0 for very negative x."""
    return x.clamp(max=MAX_EXP).exp_()


def sign(x: torch.Tensor) -> torch.Tensor:
    """T -> T: -1, 0 or 1 elementwise; 0 at 0."""
    return torch.sign(x)


def relu(x: torch.Tensor) -> torch.Tensor:
    """T -> T: max(x, 0)."""
    return torch.relu(x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """T -> T: 1 / (1 + exp(-x)), in [0, 1] for any finite x."""
    return torch.sigmoid(x)


def neg(x: torch.Tensor) -> torch.Tensor:
    """T -> T: -x."""
    return torch.neg(x)


def znorm(x: torch.Tensor) -> torch.Tensor:
    """Matrix [L,R,C] -> [L,R,C]: (x - mean) / std over each matrix; 0 for a constant matrix."""
    y = x / _amax_scale(x, (-2, -1))
    mean = y.mean(dim=(-2, -1), keepdim=True)
    std = torch.linalg.vector_norm(y.sub_(mean), dim=(-2, -1), keepdim=True)
    std.div_(math.sqrt(x.shape[-2] * x.shape[-1]))
    return y.div_(std.masked_fill_(std <= mean.abs_().mul_(TOL), math.inf))


def add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """T, T -> T: x + y, clamped to +-BIG."""
    return _finite(x + y)


def sub(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """T, T -> T: x - y, clamped to +-BIG."""
    return _finite(x - y)


def mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """T, T -> T: x * y, clamped to +-BIG."""
    return _finite(x * y)


def div_safe(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """T, T -> T: x / y, clamped to +-BIG; sign(x) (so 0 for 0/0) where |y| < EPS."""
    small = (y > -EPS) & (y < EPS)
    return _finite(torch.where(small, torch.sign(x), x / y))


def minimum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """T, T -> T: elementwise min(x, y)."""
    return torch.minimum(x, y)


def maximum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """T, T -> T: elementwise max(x, y)."""
    return torch.maximum(x, y)
