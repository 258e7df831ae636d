"""Type markers of the typed GP and the table of terminals that carry them.

The classes are never instantiated: DEAP's `PrimitiveSetTyped` uses them only as
labels so that a program can combine tensors only where their shapes agree. A pool
of B networks with L layers in total is stored with a leading layer dimension.
"""

from dataclasses import dataclass


class WMat:
    """Weight-shaped matrices, float32 [L, R, C]: W, dW, H (rows = outputs, subsampled)."""


class AMat:
    """Activation-shaped matrices, float32 [L, N, F]: N samples x F (subsampled) features."""


class Gram:
    """Sample-by-sample matrices, float32 [L, N, N]."""


class LScalar:
    """One number per layer, float32 [L]."""


class NScalar:
    """One number per network, float32 [B]; the root type of every program."""


@dataclass(frozen=True)
class Terminal:
    """A named input of a program.

    Attributes
    ----------
    name : str
        Identifier used in expressions (unique among terminals and primitives).
    type : type
        One of the type markers above.
    doc : str
        One line saying what the tensor holds.
    """

    name: str
    type: type
    doc: str


TERMINALS: tuple[Terminal, ...] = (
    Terminal("W", WMat, "weight as [out, in*kh*kw], subsampled"),
    Terminal("dW", WMat, "dLoss/dW, same layout as W"),
    Terminal("H", WMat, "Hessian-diagonal estimate for W (Hutchinson), same layout as W"),
    Terminal("A", AMat, "layer output on the batch, [N samples, F features]"),
    Terminal("G", AMat, "dLoss/dA, same layout as A"),
    Terminal("KA", Gram, "correlation between samples of the layer output A (up to 2048 seeded features)"),
    Terminal("KG", Gram, "correlation between samples of dLoss/dA (same features as KA)"),
    Terminal("KS", Gram, "NASWOT kernel of A: fraction of all units where two samples agree on A > 0"),
    Terminal("log_numel", LScalar, "log of the number of weights of the layer"),
    Terminal("log_fan_in", LScalar, "log of the layer's fan-in (in * kh * kw)"),
    Terminal("log_fan_out", LScalar, "log of the layer's fan-out (out * kh * kw)"),
    Terminal("depth", LScalar, "relative position of the layer in its network, in [0, 1]"),
    Terminal("log_w_norm", LScalar, "log Frobenius norm of the full weight"),
    Terminal("log_dw_norm", LScalar, "log Frobenius norm of the full weight gradient"),
    Terminal("log_snip", LScalar, "log sum |W * dW| over the full layer"),
    Terminal("log_h_trace", LScalar, "log |sum H| over the full layer"),
    Terminal("log_chan_rank", LScalar, "log participation ratio of the channel correlation within a sample"),
    Terminal("log_params", NScalar, "log of the network's number of parameters"),
    Terminal("log_flops", NScalar, "log of the network's FLOPs"),
    Terminal("log_layers", NScalar, "log of the network's number of Conv2d/Linear layers"),
    Terminal("log_grad_norm", NScalar, "log L2 norm of all Conv2d/Linear weight gradients together"),
    Terminal("log_snip_total", NScalar, "log sum |W * dW| over all Conv2d/Linear weights (SNIP)"),
    Terminal("naswot", NScalar, "logdet of the sum over all layers of KS (NASWOT)"),
    Terminal("log_chan_rank_sum", NScalar, "log of the sum over all layers of the channel participation ratio"),
    Terminal("rcor", NScalar, "logdet of the sum over all layers of |KA| + |KG| (RCor)"),
)
