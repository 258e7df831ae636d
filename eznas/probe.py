"""One network at initialisation -> `NetworkStats` (per-layer W, dW, H, A, G and net scalars).

A *node* is each ``nn.Conv2d`` and ``nn.Linear`` module that runs in the forward pass, in the
order of its first call (a module called again adds FLOPs, not a node), and the projections
that ``nn.MultiheadAttention`` calls functionally (its packed in-projection, or its q/k/v
projections, and ``out_proj``): the probe runs them as Linear modules that share the
attention's parameters (`_SeenAttention`). Weights of any other layer that runs (Conv1d,
Embedding, RNNs ...) are not seen; the probe warns, naming their module types.

The net is never touched: the probe works on a private copy (`private_copy`) whose parameters
are new ``nn.Parameter`` objects over the same storage (so parameters cost no memory; the probe
never writes to them), whose buffers are copies (its batch-norm layers update their own running
statistics) and which has no hooks. Memory: one copy of the buffers and of the module objects,
and of the batch. The caller's parameters, buffers (values and autograd version counters, so a
pending backward still works), ``.grad``, ``requires_grad`` flags, train/eval modes and hooks
are left alone (the caller's hooks do not fire), and the global RNG state is restored
(``torch.random.fork_rng``). In the copy, every batch-norm (and instance-norm) layer runs in
training mode, on batch statistics, as zero-cost proxies do, and every other module in eval
mode (dropout off). Scaled dot-product attention runs its math kernel (twice differentiable,
for the Hessian products, and the same whatever the statistics asked).

For a batch of N samples the probe runs, on the copy:

1. a forward pass on the first two samples that finds the classifier (the last node found)
   and checks the output; the classifier's weight is then re-drawn, seeded, uniform in
   +-1/sqrt(fan_in), and its bias zeroed, so that no statistic depends on how the net
   initialised its head (a zero-initialised head would stop every gradient);
2. one forward pass of the batch with hooks;
3. when a gradient statistic is needed, one ``torch.autograd.grad`` call for the weight
   gradients dW and the output gradients G of the nodes (a tensor hook per node output);
4. when a Hessian statistic is needed, ``hessian_probes`` Hessian-vector products for a
   Hutchinson estimate H of the Hessian diagonal of the kept nodes' weights.

The loss is the mean over samples of each sample's cross-entropy on its label (or of the sum of
its logits), and every statistic is a per-sample average or a per-sample quantity (``G``, and
the logdets ``naswot`` and ``rcor`` divided by N), so that none grows with the batch size; the
[N, N] matrices KA, KG, KS are batch-sized by nature. The logits are the forward output if it is a tensor; of
a tuple or list, its last element (xautodl's ``(features, logits)``); of a dict (or model-output
mapping), its ``"logits"`` entry, else its ``"out"`` entry.

With ``max_layers`` set, only that many nodes, evenly spread over the forward order, are kept in
the stats (``depth``, ``log_layers`` and the net scalars still refer to all L nodes). Per kept
node the stats hold fixed, seeded subsamples (so every node has the same shape and the layers of
many networks stack into one tensor):

- ``W``, ``dW``, ``H`` [L, R, C]: the weight as a matrix [out, in/groups * kh * kw], its
  gradient, its Hessian-diagonal estimate; ``R`` rows and ``C`` columns kept.
- ``A``, ``G`` [L, N, F]: the node output flattened per sample to [N, C*H*W] (or [N, out]; an
  output [L, N, ...] is taken as sequence first, one [N*k, ...] as the batch folded in, batch
  major, as windowed attention does) and its gradient, ``F`` columns kept. ``G`` is per sample:
  N * dLoss/dA, the gradient of each sample's own loss.
- ``KA``, ``KG``, ``KS`` [L, N, N]: sample-by-sample matrices from the node output (at most
  ``GRAM_FEATURES`` = 2048 seeded columns of it): Pearson correlation of A, of G, and the NASWOT
  kernel of A (fraction of units where two samples agree on A > 0).
- [L] scalars: ``log_numel``, ``log_fan_in`` (inputs summed by one output unit: in/groups*kh*kw,
  or in_features), ``log_fan_out`` (outputs fed by one input unit: out/groups*kh*kw, or
  out_features; unlike ``torch.nn.init``, groups are taken into account), ``depth`` (l/(L-1)
  with l the node's position among all L nodes, 0 for L=1), and over the FULL tensors
  ``log_w_norm`` (Frobenius), ``log_dw_norm``, ``log_snip`` (sum |W * dW|) and ``log_h_trace``
  (|sum H|, the estimated trace of the node's Hessian block); and ``log_chan_rank``, the log of
  the node output's channel participation ratio (`channel_rank`).

Net scalars: ``log_params`` (every parameter of the net, whatever its ``requires_grad``),
``log_flops`` (multiply-accumulates of every node call for one sample, from the output shapes
seen in the forward pass, biases not counted), ``log_layers`` (log L, all nodes) and, over ALL
nodes, ``log_grad_norm`` (L2 norm of every node's dW together), ``log_snip_total`` (sum
|W * dW|, the SNIP score), ``naswot`` (logdet of the sum of KS, Mellor et al. 2021, per sample:
divided by N), ``log_chan_rank_sum`` (log of the sum of every node's channel participation
ratio) and ``rcor`` (logdet of the sum of |KA| + |KG|, per sample). Every log is taken of
``x + TINY`` so that it stays finite.

The statistics come in *measures* (`MEASURES`), groups computed together; the probe runs only
the measures that produce a needed statistic, and an exported proxy embeds only those
(`eznas.embed`). Subsampling: the kept columns (rows) are a permutation of the available
ones drawn from a CPU ``torch.Generator`` seeded from (`SUBSAMPLE_SEED`, node index, role); a
layer narrower than F (R, C) repeats that permutation cyclically. The Rademacher vectors of the
Hutchinson estimate are drawn the same way, on the kept nodes only, then moved to the device.

This module imports only torch and the standard library: exported proxies embed its code.
"""

from __future__ import annotations

import copy
import hashlib
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

PROBE_VERSION = 6
TINY = 1e-30
GRAM_FEATURES = 2048  # the sample Grams KA, KG, KS use at most this many seeded feature columns
CHANNEL_SAMPLES = 8  # `channel_rank` averages over the first this many samples of the batch

MATRIX_STATS = ("W", "dW", "H", "A", "G", "KA", "KG", "KS")
LAYER_SCALARS = (
    "log_numel", "log_fan_in", "log_fan_out", "depth",
    "log_w_norm", "log_dw_norm", "log_snip", "log_h_trace", "log_chan_rank",
)
NET_SCALARS = ("log_params", "log_flops", "log_layers", "log_grad_norm", "log_snip_total", "naswot",
               "log_chan_rank_sum", "rcor")
ALL_STATS = frozenset(MATRIX_STATS + LAYER_SCALARS + NET_SCALARS)
SIZE_STATS = frozenset({"log_numel", "log_fan_in", "log_fan_out", "depth", "log_params", "log_flops", "log_layers"})
LOSSES = ("ce", "logit_sum")
INPUT_KINDS = ("real", "noise")
SUBSAMPLE_SEED = 0  # seed of the kept rows/columns, of the Rademacher probes and of the classifier
_MAX_WIDTH = 1 << 16
_MAX_PROBES = 1 << 16
_MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ProbeSettings:
    """How network statistics are produced: the batch a network sees and what the probe keeps.

    The one settings type from a run config's ``[probe]`` table to `probe` (`probe` itself reads
    the last six fields; the first four say how the network and its batch are made). Every field
    enters the statistics cache key (`eznas.pool.network_key`). Out-of-range values raise
    ValueError naming the field and its range.
    """

    batch_size: int = 64  # N: images per probe minibatch
    input_kind: str = "real"  # real images or Gaussian noise
    net_seed: int = 0  # initialisation seed of every network
    batch_seed: int = 0  # which images form the minibatch
    features: int = 64  # F: columns kept of each node's activations A and gradients G
    weight_rows: int = 32  # R: rows kept of W, dW, H
    weight_cols: int = 32  # C: columns kept of W, dW, H
    max_layers: int | None = 16  # at most this many nodes, evenly spread over depth (None: every node)
    hessian_probes: int = 1  # Rademacher probes of the Hutchinson Hessian-diagonal estimate
    loss: str = "ce"  # ce (cross-entropy on the labels) or logit_sum (sum of logits, as EZNAS)

    def __post_init__(self) -> None:
        ranges = {
            "batch_size": (2, 5000),
            "net_seed": (0, _MAX_SEED),
            "batch_seed": (0, _MAX_SEED),
            "features": (1, _MAX_WIDTH),
            "weight_rows": (1, _MAX_WIDTH),
            "weight_cols": (1, _MAX_WIDTH),
            "max_layers": (1, _MAX_WIDTH),
            "hessian_probes": (1, _MAX_PROBES),
        }
        for name, (lo, hi) in ranges.items():
            value = getattr(self, name)
            if name == "max_layers" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(
                    f"ProbeSettings.{name} = {value!r}: must be an integer in [{lo}, {hi}]"
                    + (" or None" if name == "max_layers" else "")
                )
        for name, allowed in (("loss", LOSSES), ("input_kind", INPUT_KINDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ProbeSettings.{name} = {getattr(self, name)!r}: must be one of {', '.join(allowed)}")

    def cache_fields(self) -> dict[str, object]:
        """What the probe itself reads, as it enters the cache key (with the subsample seed)."""
        return {"features": self.features, "weight_rows": self.weight_rows, "weight_cols": self.weight_cols,
                "max_layers": self.max_layers, "hessian_probes": self.hessian_probes, "loss": self.loss,
                "seed": SUBSAMPLE_SEED}


@dataclass
class NetworkStats:
    """Statistics of one network on one batch (float32 tensors on the CPU).

    Attributes
    ----------
    layers : stat name -> tensor stacked over nodes on dim 0 ([L, R, C], [L, N, F] or [L]).
    net : net-level scalar name -> value.
    """

    layers: dict[str, torch.Tensor]
    net: dict[str, float]

    @property
    def num_layers(self) -> int:
        """L, the number of nodes."""
        return next(iter(self.layers.values())).shape[0]

    @property
    def statistics(self) -> frozenset[str]:
        """The names of the statistics held (per-layer and net-level)."""
        return frozenset(self.layers) | frozenset(self.net)

    def only(self, names: frozenset[str]) -> NetworkStats:
        """These statistics restricted to ``names`` (the same tensors, not copies)."""
        return NetworkStats({k: v for k, v in self.layers.items() if k in names},
                            {k: v for k, v in self.net.items() if k in names})


# ----------------------------------------------------------------------------- seeded draws

def _seed(*parts: object) -> int:
    """A 63-bit seed mixed from ``parts`` (stable across processes and platforms)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(*parts: object) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(_seed(*parts))
    return gen


@lru_cache(maxsize=8192)
def subsample_index(size: int, k: int, seed: int, node: int, role: str) -> torch.Tensor:
    """The ``k`` indices kept of ``size`` for a node and role (``"A"``, ``"K"``, ``"rows"``, ``"cols"``).

    A seeded permutation of ``range(size)``, cut to ``k`` or repeated cyclically up to ``k``
    when ``size < k``. The returned CPU tensor is shared (cached): do not modify it.
    """
    perm = torch.randperm(size, generator=_generator(seed, node, role))
    if size < k:
        perm = perm.repeat(-(-k // size))
    return perm[:k].clone()


def rademacher(shape: torch.Size, seed: int, node: int, probe_index: int,
               dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The Rademacher (+-1) vector of one node and probe, drawn on the CPU then moved."""
    bits = torch.randint(0, 2, tuple(shape), generator=_generator(seed, node, "z", probe_index),
                         dtype=torch.int8)
    return bits.to(device=device, dtype=dtype).mul_(2).sub_(1)


def kept_nodes(count: int, max_layers: int | None) -> list[int]:
    """Positions of the nodes kept out of ``count``: all, or ``max_layers`` evenly spread."""
    if max_layers is None or count <= max_layers:
        return list(range(count))
    if max_layers == 1:
        return [0]
    return [round(j * (count - 1) / (max_layers - 1)) for j in range(max_layers)]


# ----------------------------------------------------------------------------- kernels

def _unit_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre the rows of ``x`` [..., M, D] (float32) and return them with 1/norm per row.

    A row whose centred norm is at most 1e-12 * (1 + the largest centred row norm of its matrix)
    counts as constant: its factor is 0 (it correlates 0 with every other row).
    """
    x = x.float()
    x = x - x.mean(dim=-1, keepdim=True)
    norm = torch.linalg.vector_norm(x, dim=-1)
    live = norm > norm.amax(dim=-1, keepdim=True).add(1.0).mul_(1e-12)
    return x, torch.where(live, norm.clamp_min(TINY).reciprocal(), torch.zeros_like(norm))


def sample_corr(x: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the rows (samples) of ``x`` [..., N, D] -> [..., N, N] (float32).

    A constant row correlates 0 with every other row; the diagonal is 1.
    """
    x, inv = _unit_rows(x)
    corr = (x @ x.mT).mul_(inv.unsqueeze(-1)).mul_(inv.unsqueeze(-2))
    corr.diagonal(dim1=-2, dim2=-1).fill_(1.0)
    return corr


def sign_kernel(x: torch.Tensor) -> torch.Tensor:
    """NASWOT kernel of ``x`` [..., N, D] -> [..., N, N]: fraction of units where two samples agree on x > 0.

    With s = +-1 codes, agreements = (s s^T / D + 1) / 2: one matrix product.
    """
    s = (x > 0).float().mul_(2.0).sub_(1.0)
    return (s @ s.mT).div_(x.shape[-1]).add_(1.0).mul_(0.5)


def channel_rank(out: torch.Tensor, samples: int = CHANNEL_SAMPLES) -> float:
    """Participation ratio (sum of eigenvalues)^2 / (sum of squared eigenvalues) of the channel
    correlation of a node output, averaged over its first ``samples`` samples.

    For an output [N, C, H, W] the channels of one sample are correlated over its H*W spatial
    positions ([C, C] Pearson matrix); for an output without spatial extent ([N, D], or H*W = 1)
    the D units are correlated over the N samples of the batch. The ratio runs from 1 (every
    channel carries the same signal) to the number of non-constant channels (uncorrelated
    channels), and needs no eigendecomposition: the trace is that count and the sum of squared
    eigenvalues is the squared Frobenius norm. Constant channels count as absent.
    """
    x = out.detach()
    if x.dim() > 2 and x[0, 0].numel() > 1:
        x = x[:samples].flatten(2)  # [S, C, positions]
    else:
        x = x.reshape(x.shape[0], -1).T.unsqueeze(0)  # [1, units, samples]
    x, inv = _unit_rows(x)
    x = x * inv.unsqueeze(-1)
    small = x @ x.mT if x.shape[1] <= x.shape[2] else x.mT @ x
    trace = (inv > 0).sum(dim=1).float()
    ratio = trace.square() / small.square().sum(dim=(1, 2)).clamp_min(TINY)
    return float(ratio.mean())


def _logdet(m: torch.Tensor) -> float:
    """log|det(m + 1e-6 I)|, finite for any finite m (-1e30 for a singular one)."""
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    value = float(torch.linalg.slogdet(m + 1e-6 * eye).logabsdet)
    return value if math.isfinite(value) else -1e30


def _log(x: float | torch.Tensor) -> float | torch.Tensor:
    if isinstance(x, torch.Tensor):
        return torch.log(x.double() + TINY)
    return math.log(x + TINY)


def _per_sample(t: torch.Tensor, n: int) -> torch.Tensor | None:
    """``t`` detached as [n, features], None when no dimension holds the batch.

    Batch first ([n, ...]); sequence first ([L, n, ...]); or the batch folded into the first
    dimension, batch-major ([n*k, ...], as windowed or patch-wise attention layouts are).
    """
    if t.dim() >= 1 and t.shape[0] == n:
        return t.detach().reshape(n, -1)
    if t.dim() >= 2 and t.shape[1] == n:
        return t.detach().transpose(0, 1).reshape(n, -1)
    if t.dim() >= 1 and t.shape[0] % n == 0:
        return t.detach().reshape(n, -1)
    return None


def _stack(values: list[torch.Tensor | float]) -> torch.Tensor:
    """Per-node tensors or numbers -> one float32 CPU tensor stacked on dim 0."""
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values).to(device="cpu", dtype=torch.float32)
    return torch.tensor(values, dtype=torch.float32)


# ----------------------------------------------------------------------------- the caller's batch

def check_batch(inputs: Any, targets: Any, loss: str) -> None:
    """ValueError naming the argument and the fix unless ``inputs`` is a non-empty batch tensor
    [N, ...] and, for the cross-entropy loss, ``targets`` an integer tensor [N] of class labels."""
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(f"inputs: expected one tensor holding the batch [N, ...], got {type(inputs).__name__}; "
                         f"stack the samples into one tensor (torch.stack)")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs: the batch is empty (shape {tuple(inputs.shape)}); pass at least two samples")
    if loss != "ce":
        return
    if targets is None:
        raise ValueError("targets: None, but the cross-entropy loss needs the class label of every sample; "
                         "pass an integer tensor [N]")
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets: expected an integer tensor [N] of class labels, got {type(targets).__name__}; "
                         f"convert it with torch.as_tensor")
    if targets.shape != inputs.shape[:1] or targets.is_floating_point() or targets.is_complex():
        raise ValueError(f"targets: expected an integer tensor of shape [{inputs.shape[0]}] (one class label per "
                         f"sample), got {targets.dtype} {tuple(targets.shape)}; pass class indices")


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a forward output: the output itself if it is a tensor; of a tuple or list,
    its last element; of a dict (or model-output mapping), its ``"logits"`` entry, else ``"out"``.

    ValueError (naming the net and the accepted forms) when there is no tensor there.
    """
    found = output
    if isinstance(output, Mapping):
        found = output.get("logits", output.get("out"))
    elif isinstance(output, (tuple, list)) and output:
        found = output[-1]
    if not isinstance(found, torch.Tensor):
        kind = f"{type(output).__name__} with keys {list(output)}" if isinstance(output, Mapping) else type(output).__name__
        raise ValueError(f"net: its forward returned {kind}; the probe needs the logits [N, classes]: a tensor, "
                         f"a tuple or list ending with them, or a dict with a 'logits' or 'out' entry; wrap the net")
    return found


def _checked_logits(output: Any, targets: torch.Tensor | None, n: int, loss: str) -> torch.Tensor:
    """`logits_of` ``output``, checked to be [n, classes] with every label of ``targets`` a class index."""
    logits = logits_of(output)
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(f"net: its logits have shape {tuple(logits.shape)}, expected [{n}, classes] for a batch of "
                         f"{n}; wrap the net so that its forward returns one row of class scores per sample")
    if loss == "ce":
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= logits.shape[1]:
            raise ValueError(f"targets: labels must lie in [0, {logits.shape[1]}) for the net's {logits.shape[1]} "
                             f"output classes, got labels in [{low}, {high}]; pass labels of the net's classes")
    return logits


# ----------------------------------------------------------------------------- the private copy

NODE_TYPES = (nn.Conv2d, nn.Linear)


class _SeenAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose projections run as Linear modules (``seen_in``, or ``seen_q``,
    ``seen_k``, ``seen_v``, and ``out_proj``) sharing its parameters, so the probe's hooks see them.

    The attention itself is torch's ``F.multi_head_attention_forward`` on the projected inputs,
    with identity projections (exact in floating point). For cross-attention with a packed
    in-projection, that projection runs once per input (its node output is the query's).
    Unbatched inputs run the original forward, unseen.
    """

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if query.dim() != 3:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        width = self.embed_dim
        batch = (lambda t: t) if self.batch_first else (lambda t: t.transpose(0, 1))
        if self._qkv_same_embed_dim and query is key and key is value:
            q, k, v = self.seen_in(batch(query)).chunk(3, dim=-1)
        elif self._qkv_same_embed_dim:
            q, k, v = (self.seen_in(batch(t))[..., j * width:(j + 1) * width]
                       for j, t in enumerate((query, key, value)))
        else:
            biases = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (0.0, 0.0, 0.0)
            q, k, v = (proj(batch(t)) + b for proj, t, b in
                       zip((self.seen_q, self.seen_k, self.seen_v), (query, key, value), biases))
        eye = torch.eye(width, dtype=q.dtype, device=q.device)
        out, weights = F.multi_head_attention_forward(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), width, self.num_heads, None, None,
            self.bias_k, self.bias_v, self.add_zero_attn, self.dropout, eye, None, training=self.training,
            key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask,
            use_separate_proj_weight=True, q_proj_weight=eye, k_proj_weight=eye, v_proj_weight=eye,
            average_attn_weights=average_attn_weights, is_causal=is_causal)
        return batch(self.out_proj(out.transpose(0, 1))), weights


def _shared_linear(weight: nn.Parameter) -> nn.Linear:
    """A bias-free ``nn.Linear`` whose weight is ``weight`` itself."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    linear.weight = weight
    return linear


def _see_attention(attention: nn.MultiheadAttention) -> None:
    """Turn ``attention`` (of the private copy) into a `_SeenAttention`."""
    attention.__class__ = _SeenAttention
    if attention._qkv_same_embed_dim:
        attention.seen_in = _shared_linear(attention.in_proj_weight)
        attention.seen_in.bias = attention.in_proj_bias
    else:
        attention.seen_q = _shared_linear(attention.q_proj_weight)
        attention.seen_k = _shared_linear(attention.k_proj_weight)
        attention.seen_v = _shared_linear(attention.v_proj_weight)


class _Hardsigmoid(nn.Hardsigmoid):
    """``nn.Hardsigmoid`` as relu6(x + 3) / 6, which autograd can differentiate twice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class _Hardswish(nn.Hardswish):
    """``nn.Hardswish`` as x * relu6(x + 3) / 6, which autograd can differentiate twice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


_TWICE_DIFFERENTIABLE = {nn.Hardsigmoid: _Hardsigmoid, nn.Hardswish: _Hardswish}


def private_copy(net: nn.Module) -> nn.Module:
    """The copy of ``net`` that the probe works on (see the module docstring).

    Its parameters share the net's storage, with ``requires_grad`` off; its buffers and other
    state are deep copies; it has no module hooks; its ``nn.MultiheadAttention`` modules are
    `_SeenAttention`; its ``nn.Hardsigmoid`` and ``nn.Hardswish`` modules compute the same
    function in a twice-differentiable form (torch has no second derivative of their kernels); it
    is in probe mode (normalisation layers in training mode, the rest in eval).
    """
    memo: dict[int, Any] = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in net.parameters()}
    for module in net.modules():
        for name, value in vars(module).items():
            if "hooks" in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    try:
        work = copy.deepcopy(net, memo)
    except Exception as e:  # the net holds something that cannot be copied
        raise ValueError(f"net: the probe works on a private copy and copy.deepcopy failed "
                         f"({type(e).__name__}: {e}); make the net deep-copyable") from None
    work.eval()
    for module in list(work.modules()):
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.train()
        if type(module) is nn.MultiheadAttention:
            _see_attention(module)
        if type(module) in _TWICE_DIFFERENTIABLE:
            module.__class__ = _TWICE_DIFFERENTIABLE[type(module)]
    return work


def redraw_classifier(head: nn.Module) -> None:
    """Re-draw the classifier's weight, seeded, uniform in +-1/sqrt(fan_in); zero its bias."""
    weight = head.weight
    bound = 1.0 / math.sqrt(weight[0].numel())
    values = torch.rand(weight.shape, generator=_generator(SUBSAMPLE_SEED, "classifier"), dtype=torch.float64)
    head.weight = nn.Parameter(values.mul_(2 * bound).sub_(bound).to(device=weight.device, dtype=weight.dtype),
                               requires_grad=False)
    if getattr(head, "bias", None) is not None:
        head.bias = nn.Parameter(torch.zeros_like(head.bias), requires_grad=False)


# ----------------------------------------------------------------------------- recording

def _weight_matrices(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``module`` itself named ``*weight*`` with two or more dimensions."""
    return [p for name, p in module.named_parameters(recurse=False) if "weight" in name and p.dim() > 1]


class _Recorder:
    """Forward hooks on the private copy: find the nodes, count their FLOPs and hand each node's
    first output (and, through a tensor hook, its gradient) to the measures.

    Also notes the other modules with weight matrices that run, to report those not seen (`unseen`).
    """

    def __init__(self, work: nn.Module, measures: list[_Measure], n: int, need_grad: bool) -> None:
        self.measures = measures
        self.n = n
        self.need_grad = need_grad
        self.nodes: list[nn.Module] = []
        self.macs = 0.0
        self.grads: dict[int, torch.Tensor] = {}
        self._index: dict[int, int] = {}
        self._ran: list[nn.Module] = []
        self._no_layout: set[str] = set()
        self._tensor_hooks: list[Any] = []
        self._hooks = []
        for module in work.modules():
            if isinstance(module, NODE_TYPES):
                module.weight.requires_grad_(True)
                self._hooks.append(module.register_forward_hook(self._on_output))
            elif _weight_matrices(module):
                self._hooks.append(module.register_forward_hook(lambda m, args, out: self._ran.append(m)))

    def forward(self, work: nn.Module, x: torch.Tensor) -> Any:
        """``work(x)`` with the hooks, which are removed afterwards; batch-norm's complaint about a
        too small batch becomes a ValueError naming the batch."""
        try:
            return work(x)
        except ValueError as e:
            if "Expected more than 1" not in str(e):
                raise
            raise ValueError(f"inputs: a batch of {len(x)} is too small for the net's normalisation layers, which "
                             f"the probe runs on batch statistics ({e}); pass more samples") from None
        finally:
            for hook in self._hooks:
                hook.remove()

    def release(self) -> None:
        """Remove the tensor hooks (so that Hessian products do not call them again)."""
        for hook in self._tensor_hooks:
            hook.remove()

    def _on_output(self, module: nn.Module, args: tuple, out: Any) -> None:
        flat = _per_sample(out, self.n) if isinstance(out, torch.Tensor) else None
        if flat is None:
            self._no_layout.add(type(module).__name__)
            return
        self.macs += flat.shape[1] * module.weight[0].numel()
        if id(module) in self._index:
            return
        index = self._index[id(module)] = len(self.nodes)
        self.nodes.append(module)
        for measure in self.measures:
            measure.on_output(index, out, flat)
        if self.need_grad and out.requires_grad:
            self._tensor_hooks.append(out.register_hook(lambda grad: self._on_grad(index, grad)))

    def _on_grad(self, index: int, grad: torch.Tensor) -> None:
        flat = _per_sample(grad, self.n)
        for measure in self.measures:
            measure.on_grad(index, flat)

    def unseen(self) -> list[str]:
        """The types of the modules whose weight matrices ran in the forward pass but are not
        nodes (a private subclass of the probe's is named by its public base)."""
        seen = {id(m.weight) for m in self.nodes}
        names = {next(c.__name__ for c in type(m).__mro__ if not c.__name__.startswith("_")) for m in self._ran
                 if any(id(p) not in seen for p in _weight_matrices(m))}
        return sorted(names | self._no_layout)


# ----------------------------------------------------------------------------- measures

class _Measure:
    """A group of statistics computed together; the probe runs it when one of ``provides`` is needed.

    Subclasses override the hooks they use: ``on_output`` (each node's first forward output, and
    that output flattened per sample), ``on_grad`` (its gradient, flattened per sample, None when
    the gradient does not have a per-sample layout), and ``finish`` (after the passes: add the
    statistics of the kept nodes ``keep`` to ``layers`` and net scalars to ``scalars``).
    """

    provides: frozenset[str] = frozenset()
    grad = False  # needs the backward pass
    hessian = False  # needs the Hessian-vector products
    all_grads = False  # needs the weight gradient of every node, not only of the kept ones

    def __init__(self, settings: Any, wanted: frozenset[str]) -> None:
        self.settings = settings
        self.values: dict[int, Any] = {}

    def on_output(self, index: int, out: torch.Tensor, flat: torch.Tensor) -> None:
        pass

    def on_grad(self, index: int, flat: torch.Tensor | None) -> None:
        pass

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        pass


def _gram_input(flat: torch.Tensor, index: int) -> torch.Tensor:
    """At most `GRAM_FEATURES` seeded columns of a node output flattened per sample."""
    if flat.shape[1] <= GRAM_FEATURES:
        return flat
    return flat.index_select(1, subsample_index(flat.shape[1], GRAM_FEATURES, SUBSAMPLE_SEED, index, "K").to(flat.device))


def _columns(flat: torch.Tensor, index: int, features: int) -> torch.Tensor:
    """The ``features`` seeded columns A and G keep of a node output flattened per sample."""
    return flat.index_select(1, subsample_index(flat.shape[1], features, SUBSAMPLE_SEED, index, "A").to(flat.device))


class _Activations(_Measure):
    """A: the seeded feature columns of each node output."""

    provides = frozenset({"A"})

    def on_output(self, index: int, out: torch.Tensor, flat: torch.Tensor) -> None:
        self.values[index] = _columns(flat, index, self.settings.features)

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        layers["A"] = _stack([self.values[i] for i in keep])


class _OutputGrads(_Measure):
    """G: the same columns of each node output's per-sample gradient (N * dLoss/dA)."""

    provides = frozenset({"G"})
    grad = True

    def on_output(self, index: int, out: torch.Tensor, flat: torch.Tensor) -> None:
        self.values[index] = torch.zeros(flat.shape[0], self.settings.features, dtype=flat.dtype, device=flat.device)

    def on_grad(self, index: int, flat: torch.Tensor | None) -> None:
        if flat is not None:
            self.values[index] = _columns(flat, index, self.settings.features).mul_(flat.shape[0])

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        layers["G"] = _stack([self.values[i] for i in keep])


class _Correlations(_Measure):
    """KA and KG, the sample correlations of each node output and of its gradient, and RCor."""

    provides = frozenset({"KA", "KG", "rcor"})

    def __init__(self, settings: Any, wanted: frozenset[str]) -> None:
        super().__init__(settings, wanted)
        self.grad = bool(wanted & {"KG", "rcor"})
        self.grad_values: dict[int, torch.Tensor] = {}

    def on_output(self, index: int, out: torch.Tensor, flat: torch.Tensor) -> None:
        self.values[index] = sample_corr(_gram_input(flat, index))
        if self.grad:
            self.grad_values[index] = torch.zeros_like(self.values[index])

    def on_grad(self, index: int, flat: torch.Tensor | None) -> None:
        if self.grad and flat is not None:
            self.grad_values[index] = sample_corr(_gram_input(flat, index))

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        layers["KA"] = _stack([self.values[i] for i in keep])
        if self.grad:
            layers["KG"] = _stack([self.grad_values[i] for i in keep])
            total = sum(ka.double().abs() + kg.double().abs()
                        for ka, kg in zip(self.values.values(), self.grad_values.values()))
            scalars["rcor"] = _logdet(total) / rec.n


class _SignKernel(_Measure):
    """KS, the NASWOT kernel of each node output, and NASWOT over all nodes."""

    provides = frozenset({"KS", "naswot"})

    def on_output(self, index: int, out: torch.Tensor, flat: torch.Tensor) -> None:
        self.values[index] = sign_kernel(_gram_input(flat, index))

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        layers["KS"] = _stack([self.values[i] for i in keep])
        scalars["naswot"] = _logdet(sum(ks.double() for ks in self.values.values())) / rec.n


class _ChannelRank(_Measure):
    """The channel participation ratio of each node output (`channel_rank`)."""

    provides = frozenset({"log_chan_rank", "log_chan_rank_sum"})

    def on_output(self, index: int, out: torch.Tensor, flat: torch.Tensor) -> None:
        self.values[index] = channel_rank(out)

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        layers["log_chan_rank"] = _stack([_log(self.values[i]) for i in keep])
        scalars["log_chan_rank_sum"] = _log(sum(self.values.values()))


def _weight_rows_cols(weight: torch.Tensor, index: int, settings: Any) -> Any:
    """A function keeping the seeded R rows and C columns of a node weight (or any tensor shaped like it)."""
    rows = subsample_index(weight.shape[0], settings.weight_rows, SUBSAMPLE_SEED, index, "rows").to(weight.device)
    cols = subsample_index(weight[0].numel(), settings.weight_cols, SUBSAMPLE_SEED, index, "cols").to(weight.device)
    return lambda t: t.detach().reshape(t.shape[0], -1).index_select(0, rows).index_select(1, cols)


class _Weights(_Measure):
    """W and ``log_w_norm`` of the kept nodes."""

    provides = frozenset({"W", "log_w_norm"})

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        weights = [rec.nodes[i].weight.detach() for i in keep]
        layers["W"] = _stack([_weight_rows_cols(w, i, self.settings)(w) for i, w in zip(keep, weights)])
        layers["log_w_norm"] = _stack([_log(torch.linalg.vector_norm(w)) for w in weights])


class _WeightGrads(_Measure):
    """dW, its norm and SNIP of the kept nodes."""

    provides = frozenset({"dW", "log_dw_norm", "log_snip"})
    grad = True

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        pairs = [(rec.nodes[i].weight.detach(), rec.grads[i].detach()) for i in keep]
        layers["dW"] = _stack([_weight_rows_cols(w, i, self.settings)(g) for i, (w, g) in zip(keep, pairs)])
        layers["log_dw_norm"] = _stack([_log(torch.linalg.vector_norm(g)) for _, g in pairs])
        layers["log_snip"] = _stack([_log((w * g).abs().sum()) for w, g in pairs])


class _GradTotals(_Measure):
    """The gradient norm and SNIP over all nodes."""

    provides = frozenset({"log_grad_norm", "log_snip_total"})
    grad = True
    all_grads = True

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        pairs = [(rec.nodes[i].weight.detach(), g.detach()) for i, g in rec.grads.items()]
        scalars["log_grad_norm"] = float(_log(torch.sqrt(sum(g.double().square().sum() for _, g in pairs))))
        scalars["log_snip_total"] = float(_log(sum((w * g).abs().double().sum() for w, g in pairs)))


class _Hessian(_Measure):
    """H, the Hutchinson estimate of the Hessian diagonal of the kept nodes' weights, and its trace."""

    provides = frozenset({"H", "log_h_trace"})
    grad = True
    hessian = True

    def finish(self, rec: _Recorder, keep: list[int], layers: dict[str, torch.Tensor],
               scalars: dict[str, float]) -> None:
        hess = _hutchinson(rec, keep, self.settings.hessian_probes)
        layers["H"] = _stack([_weight_rows_cols(h, i, self.settings)(h) for i, h in zip(keep, hess)])
        layers["log_h_trace"] = _stack([_log(h.sum().abs()) for h in hess])


def _hutchinson(rec: _Recorder, keep: list[int], probes: int) -> list[torch.Tensor]:
    """Average over the probes of z * (Hessian @ z), z Rademacher over the kept nodes' weights jointly."""
    weights = [rec.nodes[i].weight for i in keep]
    total = [torch.zeros_like(w, memory_format=torch.contiguous_format) for w in weights]
    linked = [j for j, i in enumerate(keep) if rec.grads[i].requires_grad]
    if not linked:
        return total
    for k in range(probes):
        zs = [rademacher(w.shape, SUBSAMPLE_SEED, i, k, w.dtype, w.device) for i, w in zip(keep, weights)]
        try:
            products = torch.autograd.grad([rec.grads[keep[j]] for j in linked], weights,
                                           grad_outputs=[zs[j] for j in linked], retain_graph=k < probes - 1,
                                           allow_unused=True)
        except RuntimeError as e:
            if "is not implemented" not in str(e):
                raise
            raise ValueError(f"net: the Hessian statistics (H, log_h_trace) need second derivatives, and torch has "
                             f"none for an operation of its forward ({e}); leave those statistics out") from None
        for acc, z, hz in zip(total, zs, products):
            if hz is not None:
                acc.addcmul_(z, hz.detach())
    return [acc.div_(probes) for acc in total] if probes > 1 else total


MEASURES: tuple[type[_Measure], ...] = (_Activations, _OutputGrads, _Correlations, _SignKernel, _ChannelRank,
                                        _Weights, _WeightGrads, _GradTotals, _Hessian)
HESSIAN_STATS = _Hessian.provides  # the statistics that need the Hessian-vector products


# ----------------------------------------------------------------------------- the probe

def _fans(module: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) of a node: connections into one output unit / out of one input unit."""
    weight = module.weight
    receptive = weight[0, 0].numel()
    return weight[0].numel(), weight.shape[0] * receptive // getattr(module, "groups", 1)


def _backward(rec: _Recorder, logits: torch.Tensor, targets: torch.Tensor | None, loss_kind: str,
              inputs: list[int], create_graph: bool) -> None:
    """dW of the nodes ``inputs`` into ``rec.grads`` (zeros where the loss does not reach); runs
    the measures' gradient hooks on the way."""
    if loss_kind == "ce":
        loss = F.cross_entropy(logits, targets)
    else:
        loss = logits.sum() / logits.shape[0]
    weights = [rec.nodes[i].weight for i in inputs]
    try:
        raw = (torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True)
               if loss.requires_grad else [None] * len(weights))
    finally:
        rec.release()
    rec.grads = {i: torch.zeros_like(w) if g is None else g for i, w, g in zip(inputs, weights, raw)}


def measure(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, settings: Any,
            wanted: frozenset[str]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The statistics in ``wanted`` (and those computed with them) as (per-layer, net-level) dicts.

    `probe` without the argument resolution and the `NetworkStats` wrapper; ``settings`` is any
    object with `ProbeSettings`'s probe fields. Exported proxies call it.
    """
    check_batch(inputs, targets, settings.loss)
    first = next(net.parameters(), None)
    device = first.device if first is not None else inputs.device
    x = inputs.detach().to(device, copy=True)
    y = targets.to(device) if targets is not None and settings.loss == "ce" else None
    n = len(x)
    measures = [kind(settings, wanted) for kind in MEASURES if kind.provides & wanted]
    need_hessian = any(m.hessian for m in measures)
    need_grad = any(m.grad for m in measures)
    log_params = _log(float(sum(p.numel() for p in net.parameters())))
    work = private_copy(net)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.set_grad_enabled(need_grad), \
            sdpa_kernel(SDPBackend.MATH):
        dry = _Recorder(work, [], len(x[:2]), False)  # the first samples: find the classifier, check the output
        with torch.no_grad():
            output = dry.forward(work, x[:2])
        if not dry.nodes:
            raise ValueError("net: no Conv2d or Linear layer ran in its forward pass; the probe measures those layers")
        _checked_logits(output, y, len(x[:2]), settings.loss)
        redraw_classifier(dry.nodes[-1])
        rec = _Recorder(work, measures, n, need_grad)
        logits = _checked_logits(rec.forward(work, x), y, n, settings.loss)
        keep = kept_nodes(len(rec.nodes), settings.max_layers)
        if need_grad:
            every = any(m.all_grads for m in measures)
            _backward(rec, logits, y, settings.loss, list(range(len(rec.nodes))) if every else keep, need_hessian)
        del logits
        layers: dict[str, torch.Tensor] = {}
        scalars: dict[str, float] = {}
        for m in measures:
            m.finish(rec, keep, layers, scalars)
    unseen = rec.unseen()
    if unseen:
        warnings.warn(f"probe: the weights of {', '.join(unseen)} layers are not seen (the probe measures Conv2d, "
                      f"Linear and MultiheadAttention weights); their statistics are left out", stacklevel=3)
    fans = [_fans(rec.nodes[i]) for i in keep]
    layers["log_numel"] = _stack([_log(rec.nodes[i].weight.numel()) for i in keep])
    layers["log_fan_in"] = _stack([_log(a) for a, _ in fans])
    layers["log_fan_out"] = _stack([_log(b) for _, b in fans])
    layers["depth"] = _stack([i / max(len(rec.nodes) - 1, 1) for i in keep])
    scalars.update(log_params=float(log_params), log_flops=_log(rec.macs), log_layers=_log(len(rec.nodes)))
    return layers, scalars


def resolve_needs(needs: Iterable[str] | None) -> frozenset[str]:
    """The statistics ``needs`` names (None: every one); ValueError naming any unknown name."""
    if needs is None:
        return ALL_STATS
    wanted = frozenset(needs)
    unknown = wanted - ALL_STATS
    if unknown:
        raise ValueError(
            f"probe: unknown stat(s) {', '.join(sorted(unknown))} in needs; "
            f"known: {', '.join(sorted(ALL_STATS))}"
        )
    return wanted


def probe(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None,
          settings: ProbeSettings = ProbeSettings(),
          needs: Iterable[str] | None = None) -> NetworkStats:
    """Measure ``net`` at its current weights (its classifier re-drawn) on one batch.

    Parameters
    ----------
    net : any module whose forward returns logits [N, classes] (see `logits_of`) and that
        contains Conv2d/Linear layers. Left exactly as found (the probe works on `private_copy`).
    inputs : the batch [N, ...], copied to the device of the net's first parameter.
    targets : class labels [N] in [0, classes) (unused by the ``"logit_sum"`` loss, may be None).
    settings : subsample sizes and loss (its batch fields say how ``inputs`` was drawn; unread here).
    needs : stat names the caller needs, or None for all. Only the measures producing a needed
        stat run (the backward only for a gradient stat, the Hessian-vector products only for a
        Hessian stat); the result holds their stats and the size stats (`SIZE_STATS`).

    Returns
    -------
    NetworkStats with float32 CPU tensors. Same net, batch and settings give bit-identical
    stats on the CPU.

    Raises
    ------
    ValueError
        One line naming the argument and the fix, for a batch that is not one non-empty tensor,
        missing or malformed targets, labels outside the net's classes, a batch too small for
        its batch-norm layers, an output holding no logits, or a net with no Conv2d/Linear layer.
    """
    layers, scalars = measure(net, inputs, targets, settings, resolve_needs(needs))
    return NetworkStats(layers=layers, net=scalars)
