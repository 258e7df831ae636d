"""Per-matrix reductions: WMat / AMat / Gram [L, R, C] -> LScalar [L].

Each reduces every matrix of the leading layer dimension to one number in a single
batched call; eigen-solvers and log-determinants see matrices rescaled to a largest
magnitude of 1, so inputs near +-1e30 neither overflow nor underflow.
"""

import math

import torch

from ._safe import RIDGE, _amax_scale, _finite, _max_abs


def mat_mean(x: torch.Tensor) -> torch.Tensor:
    """Matrix [L,R,C] -> LScalar [L]: mean of each matrix's elements, clamped to +-BIG."""
    return _finite(x.mean(dim=(-2, -1)))


def mat_std(x: torch.Tensor) -> torch.Tensor:
    """Matrix [L,R,C] -> LScalar [L]: population std of each matrix; 0 for a constant matrix."""
    centred = x - x.mean(dim=(-2, -1), keepdim=True)
    std = torch.linalg.vector_norm(centred, dim=(-2, -1)).div_(math.sqrt(x.shape[-2] * x.shape[-1]))
    return _finite(std)


def mat_mean_abs(x: torch.Tensor) -> torch.Tensor:
    """Matrix [L,R,C] -> LScalar [L]: mean |x| of each matrix, clamped to BIG."""
    numel = x.shape[-2] * x.shape[-1]
    return _finite(torch.linalg.vector_norm(x, ord=1, dim=(-2, -1)).div_(numel))


def mat_frob(x: torch.Tensor) -> torch.Tensor:
    """Matrix [L,R,C] -> LScalar [L]: Frobenius norm of each matrix, clamped to BIG."""
    return _finite(torch.linalg.vector_norm(x, dim=(-2, -1)))


def mat_max_abs(x: torch.Tensor) -> torch.Tensor:
    """Matrix [L,R,C] -> LScalar [L]: largest |x| of each matrix; 0 for a zero matrix."""
    return _max_abs(x, (-2, -1))[..., 0, 0]


def trace(x: torch.Tensor) -> torch.Tensor:
    """Gram [L,N,N] -> LScalar [L]: sum of the diagonal, clamped to +-BIG."""
    return _finite(x.diagonal(dim1=-2, dim2=-1).sum(dim=-1))


def logdet(x: torch.Tensor) -> torch.Tensor:
    """Gram [L,N,N] -> LScalar [L]: log|det(x + RIDGE*I)|; N*log(RIDGE) at 0, -BIG if singular."""
    scale = _amax_scale(x, (-2, -1))
    y = x / scale
    y.diagonal(dim1=-2, dim2=-1).add_(RIDGE / scale[..., 0])
    logabs = torch.linalg.slogdet(y).logabsdet
    return _finite(logabs.add_(torch.log(scale[..., 0, 0]).mul_(x.shape[-1])))


def _sym_eig_magnitudes(x: torch.Tensor) -> torch.Tensor:
    """|eigenvalues| [L,N] of the symmetric part of each matrix scaled to a largest magnitude of 1."""
    y = x / _amax_scale(x, (-2, -1))
    y = (y + y.mT).mul_(0.5)
    try:
        return torch.linalg.eigvalsh(y).abs_()
    except torch.linalg.LinAlgError:  # no convergence; for symmetric y, svdvals = |eig|
        return torch.linalg.svdvals(y)


def eig_ratio(x: torch.Tensor) -> torch.Tensor:
    """Gram [L,N,N] -> LScalar [L]: log (max|e|+RIDGE)/(min|e|+RIDGE), e = eig(sym(x))/max|x|."""
    magnitude = _sym_eig_magnitudes(x)
    largest = magnitude.amax(dim=-1).add_(RIDGE)
    return largest.log_().sub_(magnitude.amin(dim=-1).add_(RIDGE).log_())


def eig_entropy(x: torch.Tensor) -> torch.Tensor:
    """Gram [L,N,N] -> LScalar [L]: entropy of the normalised |eigenvalues| of sym(x); 0 at x = 0."""
    magnitude = _sym_eig_magnitudes(x)
    p = magnitude / magnitude.sum(dim=-1, keepdim=True).clamp_min_(RIDGE)
    return _finite(-(p * p.clamp_min(RIDGE).log()).sum(dim=-1))
