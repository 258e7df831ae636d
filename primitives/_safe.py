"""Numerical guards shared by every primitive (gplearn-style closure).

Every primitive maps finite float32 input to finite float32 output bounded by ``BIG``.
Operations that can overflow pass their fresh result through `_finite`; operations
that square, normalise or factorise matrices first divide each matrix by its largest
magnitude (`_amax_scale`), so their intermediates stay near 1.
"""

import math

import torch

BIG = 1e30  # bound on the magnitude of every primitive's output
EPS = 1e-8  # offset inside log_abs; |denominator| below which div_safe is protected
TOL = 1e-6  # a row or matrix whose std is at most TOL * |mean| counts as constant
RIDGE = 1e-6  # ridge added to the diagonal before a log-determinant; eigenvalue floor
MAX_EXP = math.log(BIG)  # largest exponent exp_clamped evaluates


def _finite(y: torch.Tensor) -> torch.Tensor:
    """Clamp a fresh tensor in place to [-BIG, BIG] (inf included), NaN -> 0; return it."""
    return y.clamp_(-BIG, BIG).nan_to_num_(nan=0.0)


def _max_abs(x: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """Largest |x| over `dim`, kept as size-1 dims, computed without an |x| copy."""
    return torch.maximum(x.amax(dim=dim, keepdim=True), x.amin(dim=dim, keepdim=True).neg_())


def _amax_scale(x: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """Largest |x| over `dim` (kept as size-1 dims), floored at 1/BIG so dividing by it is safe."""
    return _max_abs(x, dim).clamp_min_(1.0 / BIG)
