"""The primitive set: one row per operation the GP may use, and lookup by name.

A row gives the name used in expressions, the batched function, its argument types,
its return type, a one-line description, and whether it is an aggregator (called as
``func(x, layers)`` with the pool's `Layers`). Names carry a type prefix (``w_``, ``a_``,
``gram_``, ``l_``, ``n_``) when the same operation exists for several types; ``agg_``
marks layer -> network aggregators.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import aggregate as agg
from . import elementwise as ew
from . import gram
from . import reductions as red
from .types import AMat, Gram, LScalar, NScalar, WMat


@dataclass(frozen=True)
class Primitive:
    """One operation of the typed GP.

    Attributes
    ----------
    name : str
        Unique identifier used in expressions and exported source.
    func : Callable[..., torch.Tensor]
        Batched implementation; aggregators take an extra trailing `Layers` argument.
    in_types : tuple[type, ...]
        Type markers of the arguments (the `Layers` argument excluded).
    ret_type : type
        Type marker of the result.
    doc : str
        One-line description.
    aggregator : bool
        True when `func` needs the pool's `Layers`: layer -> network reductions, and
        layer-order operations such as ``l_delta``.
    """

    name: str
    func: Callable[..., torch.Tensor]
    in_types: tuple[type, ...]
    ret_type: type
    doc: str
    aggregator: bool = False


PRIMITIVES: tuple[Primitive, ...] = (
    # WMat -> WMat
    Primitive("w_abs", ew.absolute, (WMat,), WMat, "|x|"),
    Primitive("w_square", ew.square, (WMat,), WMat, "x**2"),
    Primitive("w_sqrt_abs", ew.sqrt_abs, (WMat,), WMat, "sqrt(|x|)"),
    Primitive("w_log_abs", ew.log_abs, (WMat,), WMat, "log(|x| + eps)"),
    Primitive("w_exp_clamped", ew.exp_clamped, (WMat,), WMat, "exp(x), clamped"),
    Primitive("w_sign", ew.sign, (WMat,), WMat, "sign(x)"),
    Primitive("w_relu", ew.relu, (WMat,), WMat, "max(x, 0)"),
    Primitive("w_sigmoid", ew.sigmoid, (WMat,), WMat, "logistic sigmoid"),
    Primitive("w_neg", ew.neg, (WMat,), WMat, "-x"),
    Primitive("w_znorm", ew.znorm, (WMat,), WMat, "z-score over each matrix"),
    Primitive("w_add", ew.add, (WMat, WMat), WMat, "x + y"),
    Primitive("w_sub", ew.sub, (WMat, WMat), WMat, "x - y"),
    Primitive("w_mul", ew.mul, (WMat, WMat), WMat, "x * y"),
    Primitive("w_div_safe", ew.div_safe, (WMat, WMat), WMat, "x / y, protected"),
    # AMat -> AMat
    Primitive("a_abs", ew.absolute, (AMat,), AMat, "|x|"),
    Primitive("a_square", ew.square, (AMat,), AMat, "x**2"),
    Primitive("a_sqrt_abs", ew.sqrt_abs, (AMat,), AMat, "sqrt(|x|)"),
    Primitive("a_log_abs", ew.log_abs, (AMat,), AMat, "log(|x| + eps)"),
    Primitive("a_exp_clamped", ew.exp_clamped, (AMat,), AMat, "exp(x), clamped"),
    Primitive("a_sign", ew.sign, (AMat,), AMat, "sign(x)"),
    Primitive("a_relu", ew.relu, (AMat,), AMat, "max(x, 0)"),
    Primitive("a_sigmoid", ew.sigmoid, (AMat,), AMat, "logistic sigmoid"),
    Primitive("a_neg", ew.neg, (AMat,), AMat, "-x"),
    Primitive("a_znorm", ew.znorm, (AMat,), AMat, "z-score over each matrix"),
    Primitive("a_add", ew.add, (AMat, AMat), AMat, "x + y"),
    Primitive("a_sub", ew.sub, (AMat, AMat), AMat, "x - y"),
    Primitive("a_mul", ew.mul, (AMat, AMat), AMat, "x * y"),
    Primitive("a_div_safe", ew.div_safe, (AMat, AMat), AMat, "x / y, protected"),
    # AMat -> Gram, Gram -> Gram
    Primitive("corr", gram.corr, (AMat,), Gram, "Pearson correlation between samples"),
    Primitive("gram_sign", gram.gram_sign, (AMat,), Gram, "fraction of features agreeing on x > 0"),
    Primitive("gram_linear", gram.gram_linear, (AMat,), Gram, "x x^T / F"),
    Primitive("gram_abs", ew.absolute, (Gram,), Gram, "|x|"),
    Primitive("gram_add", ew.add, (Gram, Gram), Gram, "x + y"),
    Primitive("gram_mul", ew.mul, (Gram, Gram), Gram, "x * y (Hadamard)"),
    # matrix -> LScalar
    Primitive("w_mean", red.mat_mean, (WMat,), LScalar, "mean of each matrix"),
    Primitive("w_std", red.mat_std, (WMat,), LScalar, "std of each matrix"),
    Primitive("w_mean_abs", red.mat_mean_abs, (WMat,), LScalar, "mean |x| of each matrix"),
    Primitive("w_frob", red.mat_frob, (WMat,), LScalar, "Frobenius norm"),
    Primitive("w_max_abs", red.mat_max_abs, (WMat,), LScalar, "largest |x|"),
    Primitive("a_mean", red.mat_mean, (AMat,), LScalar, "mean of each matrix"),
    Primitive("a_std", red.mat_std, (AMat,), LScalar, "std of each matrix"),
    Primitive("a_mean_abs", red.mat_mean_abs, (AMat,), LScalar, "mean |x| of each matrix"),
    Primitive("a_frob", red.mat_frob, (AMat,), LScalar, "Frobenius norm"),
    Primitive("a_max_abs", red.mat_max_abs, (AMat,), LScalar, "largest |x|"),
    Primitive("logdet", red.logdet, (Gram,), LScalar, "log|det| with a small ridge"),
    Primitive("eig_ratio", red.eig_ratio, (Gram,), LScalar, "log condition number, symmetric part"),
    Primitive("trace", red.trace, (Gram,), LScalar, "sum of the diagonal"),
    Primitive("gram_mean_abs", red.mat_mean_abs, (Gram,), LScalar, "mean |x| of each matrix"),
    Primitive("eig_entropy", red.eig_entropy, (Gram,), LScalar, "entropy of the normalised eigenvalues (isotropy)"),
    # LScalar -> LScalar
    Primitive("l_abs", ew.absolute, (LScalar,), LScalar, "|x|"),
    Primitive("l_square", ew.square, (LScalar,), LScalar, "x**2"),
    Primitive("l_sqrt_abs", ew.sqrt_abs, (LScalar,), LScalar, "sqrt(|x|)"),
    Primitive("l_log_abs", ew.log_abs, (LScalar,), LScalar, "log(|x| + eps)"),
    Primitive("l_exp_clamped", ew.exp_clamped, (LScalar,), LScalar, "exp(x), clamped"),
    Primitive("l_sign", ew.sign, (LScalar,), LScalar, "sign(x)"),
    Primitive("l_relu", ew.relu, (LScalar,), LScalar, "max(x, 0)"),
    Primitive("l_sigmoid", ew.sigmoid, (LScalar,), LScalar, "logistic sigmoid"),
    Primitive("l_neg", ew.neg, (LScalar,), LScalar, "-x"),
    Primitive("l_add", ew.add, (LScalar, LScalar), LScalar, "x + y"),
    Primitive("l_sub", ew.sub, (LScalar, LScalar), LScalar, "x - y"),
    Primitive("l_mul", ew.mul, (LScalar, LScalar), LScalar, "x * y"),
    Primitive("l_div_safe", ew.div_safe, (LScalar, LScalar), LScalar, "x / y, protected"),
    Primitive("l_min", ew.minimum, (LScalar, LScalar), LScalar, "min(x, y)"),
    Primitive("l_max", ew.maximum, (LScalar, LScalar), LScalar, "max(x, y)"),
    Primitive("l_delta", agg.layer_delta, (LScalar,), LScalar, "change from the previous layer of the network", True),
    # LScalar / Gram -> NScalar
    Primitive("agg_mean", agg.agg_mean, (LScalar,), NScalar, "mean over the net's layers", True),
    Primitive("agg_sum", agg.agg_sum, (LScalar,), NScalar, "sum over the net's layers", True),
    Primitive("agg_max", agg.agg_max, (LScalar,), NScalar, "max over the net's layers", True),
    Primitive("agg_min", agg.agg_min, (LScalar,), NScalar, "min over the net's layers", True),
    Primitive("agg_std", agg.agg_std, (LScalar,), NScalar, "std over the net's layers", True),
    Primitive("agg_depth_mean", agg.agg_depth_mean, (LScalar,), NScalar, "weighted by depth", True),
    Primitive("logdet_sum", agg.logdet_sum, (Gram,), NScalar, "logdet of the net's Gram sum", True),
    # NScalar -> NScalar
    Primitive("n_abs", ew.absolute, (NScalar,), NScalar, "|x|"),
    Primitive("n_square", ew.square, (NScalar,), NScalar, "x**2"),
    Primitive("n_sqrt_abs", ew.sqrt_abs, (NScalar,), NScalar, "sqrt(|x|)"),
    Primitive("n_log_abs", ew.log_abs, (NScalar,), NScalar, "log(|x| + eps)"),
    Primitive("n_exp_clamped", ew.exp_clamped, (NScalar,), NScalar, "exp(x), clamped"),
    Primitive("n_sign", ew.sign, (NScalar,), NScalar, "sign(x)"),
    Primitive("n_relu", ew.relu, (NScalar,), NScalar, "max(x, 0)"),
    Primitive("n_sigmoid", ew.sigmoid, (NScalar,), NScalar, "logistic sigmoid"),
    Primitive("n_neg", ew.neg, (NScalar,), NScalar, "-x"),
    Primitive("n_add", ew.add, (NScalar, NScalar), NScalar, "x + y"),
    Primitive("n_sub", ew.sub, (NScalar, NScalar), NScalar, "x - y"),
    Primitive("n_mul", ew.mul, (NScalar, NScalar), NScalar, "x * y"),
    Primitive("n_div_safe", ew.div_safe, (NScalar, NScalar), NScalar, "x / y, protected"),
    Primitive("n_min", ew.minimum, (NScalar, NScalar), NScalar, "min(x, y)"),
    Primitive("n_max", ew.maximum, (NScalar, NScalar), NScalar, "max(x, y)"),
)


def _index(rows: tuple[Primitive, ...]) -> dict[str, Primitive]:
    """Map names to rows, rejecting duplicates (DEAP requires unique names)."""
    index: dict[str, Primitive] = {}
    for row in rows:
        if row.name in index:
            raise ValueError(f"duplicate primitive name {row.name!r} in PRIMITIVES")
        index[row.name] = row
    return index


_BY_NAME = _index(PRIMITIVES)


def by_name(name: str) -> Primitive:
    """Return the primitive called `name`.

    Raises
    ------
    KeyError
        If no row of `primitives.registry.PRIMITIVES` has that name.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"unknown primitive {name!r}: add a row to primitives.registry.PRIMITIVES"
        ) from None
