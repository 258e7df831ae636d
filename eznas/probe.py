"""One network at initialisation -> `NetworkStats` (per-layer W, dW, H, A, G and net scalars).

A *node* is each ``nn.Conv2d`` and ``nn.Linear`` module that runs in the forward pass, in
the order of its first call (a module called again adds FLOPs, not a node). For a batch the
probe runs one forward pass with hooks, one ``torch.autograd.grad`` call for the weight
gradients dW and the output gradients G of every node, and ``hessian_probes`` Hessian-vector
products for a Hutchinson estimate H of the Hessian diagonal of every node weight.

With ``max_layers`` set, only that many nodes, evenly spread over the forward order, are
kept in the stats (the Hessian estimate still covers all node weights jointly, and ``depth``
and ``log_layers`` still refer to all L nodes). Per kept node the stats hold fixed, seeded
subsamples (so every node has the same shape and the
layers of many networks stack into one tensor):

- ``W``, ``dW``, ``H`` [L, R, C]: the weight as a matrix [out, in/groups * kh * kw], its
  gradient, its Hessian-diagonal estimate; ``R`` rows and ``C`` columns kept.
- ``A``, ``G`` [L, N, F]: the node output flattened to [N, C*H*W] (or [N, out]) and dLoss/dA;
  ``F`` columns kept.
- ``KA``, ``KG``, ``KS`` [L, N, N]: sample-by-sample matrices from the features of the node
  output (at most ``GRAM_FEATURES`` = 2048 seeded columns of it): Pearson correlation of A, of
  G, and the NASWOT kernel of A (fraction of units where two samples agree on A > 0). Cheap (one [N, D] x [D, N] product) and exact, unlike Gram
  matrices of the F-column subsample.
- [L] scalars: ``log_numel``, ``log_fan_in`` (inputs summed by one output unit:
  in/groups*kh*kw, or in_features), ``log_fan_out`` (outputs fed by one input unit:
  out/groups*kh*kw, or out_features; unlike ``torch.nn.init``, groups are taken into account),
  ``depth`` (l/(L-1) with l the node's position among all L nodes, 0 for L=1), and over
  the FULL tensors ``log_w_norm`` (Frobenius), ``log_dw_norm``, ``log_snip`` (sum |W * dW|)
  and ``log_h_trace`` (|sum H|, the estimated trace of the node's Hessian block); and
  ``log_chan_rank``, the log of the node output's channel participation ratio (`channel_rank`:
  how many channels carry independent signal within one sample).

Net scalars: ``log_params`` (trainable parameters of the whole net), ``log_flops``
(multiply-accumulates of every Conv2d/Linear call for one sample, from the output shapes
seen in the forward pass, biases not counted), ``log_layers`` (log L, all nodes) and, when the
backward runs, over ALL nodes ``log_grad_norm`` (L2 norm of every node's dW together) and
``log_snip_total`` (sum |W * dW|, the SNIP score); also over ALL nodes ``naswot``
(logdet of the sum of KS, Mellor et al. 2021), ``log_chan_rank_sum`` (log of the sum of every
node's channel participation ratio) and, with the backward, ``rcor`` (logdet of the
sum of |KA| + |KG|). Every
log is taken of ``x + TINY`` so that it stays finite.

Subsampling: the kept columns (rows) are a permutation of the available ones drawn from a
CPU ``torch.Generator`` seeded from (`SUBSAMPLE_SEED`, node index, role); a layer narrower than
F (R, C) repeats that permutation cyclically, so its columns appear more than once. The
Rademacher vectors of the Hutchinson estimate come from CPU generators seeded from
(`SUBSAMPLE_SEED`, node index, probe index) and are then moved to the net's device.

During the probe every batch-norm (and instance-norm) layer runs in training mode, on batch
statistics, as zero-cost proxies do, and every other module in eval mode (dropout off, so the
probe is deterministic and never draws from the global RNG). The net is left exactly as found:
training flags, parameters, buffers (running statistics), ``requires_grad`` flags and ``.grad``
are restored or untouched, and no hook is left behind.

This module imports only torch and the standard library: the exporter embeds its source in
standalone proxy files.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

PROBE_VERSION = 5
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
GRADIENT_STATS = frozenset({"dW", "G", "KG", "log_dw_norm", "log_snip", "log_grad_norm", "log_snip_total", "rcor"})
HESSIAN_STATS = frozenset({"H", "log_h_trace"})
LOSSES = ("ce", "logit_sum")
INPUT_KINDS = ("real", "noise")
SUBSAMPLE_SEED = 0  # seed of the kept rows/columns and of the Rademacher probes
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
    """The ``k`` indices kept of ``size`` for a node and role (``"A"``, ``"rows"``, ``"cols"``).

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


def sample_corr(x: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the rows (samples) of ``x`` [N, D] -> [N, N] (float32 math).

    A constant row correlates 0 with every other row; the diagonal is 1.
    """
    x = x.float()
    x = x - x.mean(dim=1, keepdim=True)
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    live = norm > 1e-12 * (1.0 + x.abs().amax())
    x = torch.where(live, x / norm.clamp_min(TINY), torch.zeros_like(x))
    corr = x @ x.T
    corr.diagonal().fill_(1.0)
    return corr


def sign_kernel(x: torch.Tensor) -> torch.Tensor:
    """NASWOT kernel of ``x`` [N, D] -> [N, N]: fraction of units where two samples agree on x > 0.

    With s = +-1 codes, agreements = (s s^T / D + 1) / 2: one matrix product.
    """
    s = (x > 0).float().mul_(2.0).sub_(1.0)
    return (s @ s.T).div_(x.shape[1]).add_(1.0).mul_(0.5)


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
    x = out.detach().float()
    if x.dim() > 2 and x[0, 0].numel() > 1:
        x = x[:samples].flatten(2)  # [S, C, positions]
    else:
        x = x.reshape(x.shape[0], -1).T.unsqueeze(0)  # [1, units, samples]
    x = x - x.mean(dim=2, keepdim=True)
    norm = torch.linalg.vector_norm(x, dim=2, keepdim=True)
    live = norm > 1e-12 * (1.0 + x.abs().amax())
    x = torch.where(live, x / norm.clamp_min(TINY), torch.zeros_like(x))
    small = x @ x.transpose(1, 2) if x.shape[1] <= x.shape[2] else x.transpose(1, 2) @ x
    trace = live.flatten(1).sum(dim=1).float()
    ratio = trace.square() / small.square().sum(dim=(1, 2)).clamp_min(TINY)
    return float(ratio.mean())


def _logdet(m: torch.Tensor) -> float:
    """log|det(m + 1e-6 I)|, finite for any finite m."""
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    value = torch.linalg.slogdet(m + 1e-6 * eye).logabsdet
    return float(value) if math.isfinite(float(value)) else -1e30


def kept_nodes(count: int, max_layers: int | None) -> list[int]:
    """Positions of the nodes kept out of ``count``: all, or ``max_layers`` evenly spread."""
    if max_layers is None or count <= max_layers:
        return list(range(count))
    if max_layers == 1:
        return [0]
    return [round(j * (count - 1) / (max_layers - 1)) for j in range(max_layers)]


def _log(x: float | torch.Tensor) -> float | torch.Tensor:
    if isinstance(x, torch.Tensor):
        return torch.log(x.double() + TINY)
    return math.log(x + TINY)


def _fans(module: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) of a node: connections into one output unit / out of one input unit."""
    weight = module.weight
    groups = getattr(module, "groups", 1)
    receptive = weight[0, 0].numel()
    return weight[0].numel(), weight.shape[0] * receptive // groups


class _NetState:
    """Everything the probe may touch, captured so that it can be put back exactly."""

    def __init__(self, net: nn.Module) -> None:
        self.modes = [(m, m.training) for m in net.modules()]
        self.flags = [(p, p.requires_grad) for p in net.parameters()]
        self.buffers = [
            (m, name, buf, buf.detach().clone())
            for m in net.modules() for name, buf in m._buffers.items() if buf is not None
        ]

    def restore(self) -> None:
        for module, mode in self.modes:
            module.training = mode
        for param, flag in self.flags:
            param.requires_grad_(flag)
        with torch.no_grad():
            for module, name, buf, saved in self.buffers:
                module._buffers[name] = buf
                buf.copy_(saved)


def _resolve_needs(needs: Iterable[str] | None) -> frozenset[str]:
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


def probe(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
          settings: ProbeSettings = ProbeSettings(),
          needs: Iterable[str] | None = None) -> NetworkStats:
    """Measure ``net`` at its current weights on one batch.

    Parameters
    ----------
    net : any module whose forward returns logits [N, classes] (or a tuple starting with them)
        and that contains Conv2d/Linear layers. Left exactly as found.
    inputs : the batch, moved to the device of the net's first parameter.
    targets : class labels [N] (unused by the ``"logit_sum"`` loss).
    settings : subsample sizes and loss (its batch fields say how ``inputs`` was drawn; unread here).
    needs : stat names the caller needs, or None for all. The backward pass runs only when a
        gradient stat (dW, G, log_dw_norm, log_snip) or a Hessian stat (H, log_h_trace) is
        needed, the Hessian-vector products only for a Hessian stat. The result holds every
        stat of the passes that ran: the forward ones (W, A, log_numel, log_fan_in,
        log_fan_out, depth, log_w_norm and the net scalars) always, the gradient ones when
        the backward ran, the Hessian ones when the products ran.

    Returns
    -------
    NetworkStats with float32 CPU tensors. Same net, batch and settings give bit-identical
    stats on the CPU.
    """
    wanted = _resolve_needs(needs)
    need_hessian = bool(wanted & HESSIAN_STATS)
    need_grad = need_hessian or bool(wanted & GRADIENT_STATS)
    first = next(net.parameters(), None)
    if first is not None:
        inputs, targets = inputs.to(first.device), targets.to(first.device)
    log_params = _log(sum(p.numel() for p in net.parameters() if p.requires_grad))
    state = _NetState(net)
    try:
        net.eval()
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.train()
        if need_grad:
            for module in net.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    module.weight.requires_grad_(True)
        with torch.inference_mode(False), torch.set_grad_enabled(need_grad):
            stats = _run(net, inputs, targets, settings, need_grad, need_hessian)
    finally:
        state.restore()
    stats.net = {"log_params": float(log_params), **stats.net}
    return stats


def _run(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, settings: ProbeSettings,
         need_grad: bool, need_hessian: bool) -> NetworkStats:
    """Forward, backward and Hessian products; the net is already in probe mode."""
    seed = SUBSAMPLE_SEED
    nodes: list[nn.Module] = []
    seen: set[int] = set()
    acts: list[torch.Tensor] = []
    out_grads: dict[int, torch.Tensor] = {}
    act_grams: list[tuple[torch.Tensor, torch.Tensor]] = []
    chan_ranks: list[float] = []
    grad_grams: dict[int, torch.Tensor] = {}
    tensor_hooks = []
    macs = [0]

    def forward_hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        n = out.shape[0]
        per_sample = out.numel() // n
        macs[0] += per_sample * module.weight[0].numel()
        if id(module) in seen:
            return
        index = len(nodes)
        cols = subsample_index(per_sample, settings.features, seed, index, "A").to(out.device)
        seen.add(id(module))
        nodes.append(module)
        flat = out.detach().reshape(n, per_sample)
        acts.append(flat.index_select(1, cols))
        wide = per_sample > GRAM_FEATURES
        gcols = subsample_index(per_sample, GRAM_FEATURES, seed, index, "K").to(out.device) if wide else None
        gram_in = flat.index_select(1, gcols) if wide else flat
        act_grams.append((sample_corr(gram_in), sign_kernel(gram_in)))
        chan_ranks.append(channel_rank(out))
        if need_grad and out.requires_grad:
            def grad_hook(grad: torch.Tensor) -> None:
                flat_grad = grad.detach().reshape(n, per_sample)
                out_grads[index] = flat_grad.index_select(1, cols)
                grad_grams[index] = sample_corr(flat_grad.index_select(1, gcols) if wide else flat_grad)

            tensor_hooks.append(out.register_hook(grad_hook))

    handles = [m.register_forward_hook(forward_hook)
               for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        logits = net(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not nodes:
        raise ValueError("probe: no Conv2d or Linear layer ran in the forward pass of the net")
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    weights = [m.weight for m in nodes]

    grads: list[torch.Tensor] = []
    hess: list[torch.Tensor] = []
    if need_grad:
        loss = F.cross_entropy(logits, targets) if settings.loss == "ce" else logits.sum()
        try:
            raw = (torch.autograd.grad(loss, weights, create_graph=need_hessian, allow_unused=True)
                   if loss.requires_grad else [None] * len(weights))
        finally:
            for handle in tensor_hooks:
                handle.remove()
        grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, raw)]
        del loss, logits
        if need_hessian:
            hess = _hutchinson(weights, grads, settings)
    stats = _collect(nodes, acts, out_grads, grads, hess, settings, float(macs[0]))
    keep = kept_nodes(len(nodes), settings.max_layers)
    stats.layers["log_chan_rank"] = torch.tensor([_log(chan_ranks[i]) for i in keep], dtype=torch.float32)
    stats.net["log_chan_rank_sum"] = _log(sum(chan_ranks))
    _add_grams(stats, act_grams, grad_grams, bool(grads), settings)
    return stats


def _add_grams(stats: NetworkStats, act_grams: list[tuple[torch.Tensor, torch.Tensor]],
               grad_grams: dict[int, torch.Tensor], with_grads: bool, settings: ProbeSettings) -> None:
    """Full-resolution sample Gram matrices: per kept node KA, KS (and KG), and over ALL nodes
    the NASWOT score logdet(sum KS) and the RCor score logdet(sum |KA| + |KG|)."""
    keep = kept_nodes(len(act_grams), settings.max_layers)
    zeros = torch.zeros_like(act_grams[0][0])
    stats.layers["KA"] = torch.stack([act_grams[i][0] for i in keep]).float().cpu()
    stats.layers["KS"] = torch.stack([act_grams[i][1] for i in keep]).float().cpu()
    stats.net["naswot"] = _logdet(sum(ks.double() for _, ks in act_grams))
    if with_grads:
        kg = [grad_grams.get(i, zeros) for i in range(len(act_grams))]
        stats.layers["KG"] = torch.stack([kg[i] for i in keep]).float().cpu()
        stats.net["rcor"] = _logdet(sum(ka.double().abs() + g.double().abs() for (ka, _), g in zip(act_grams, kg)))


def _hutchinson(weights: list[torch.Tensor], grads: list[torch.Tensor],
                settings: ProbeSettings) -> list[torch.Tensor]:
    """Average of z * (Hessian @ z) over the probes, z Rademacher over all node weights."""
    linked = [i for i, g in enumerate(grads) if g.requires_grad]
    total = [torch.zeros_like(w, memory_format=torch.contiguous_format) for w in weights]
    if not linked:
        return total
    probes = settings.hessian_probes
    for k in range(probes):
        zs = [rademacher(w.shape, SUBSAMPLE_SEED, i, k, w.dtype, w.device)
              for i, w in enumerate(weights)]
        products = torch.autograd.grad(
            [grads[i] for i in linked], weights, grad_outputs=[zs[i] for i in linked],
            retain_graph=k < probes - 1, allow_unused=True,
        )
        for acc, z, hz in zip(total, zs, products):
            if hz is not None:
                acc.addcmul_(z, hz.detach())
    if probes > 1:
        for acc in total:
            acc.div_(probes)
    return total


def _collect(nodes: list[nn.Module], acts: list[torch.Tensor], out_grads: dict[int, torch.Tensor],
             grads: list[torch.Tensor], hess: list[torch.Tensor], settings: ProbeSettings,
             macs: float) -> NetworkStats:
    """Subsample, reduce and stack the per-node tensors into float32 CPU stats."""
    seed = SUBSAMPLE_SEED
    count = len(nodes)
    keep = kept_nodes(count, settings.max_layers)
    matrices: dict[str, list[torch.Tensor]] = {"W": [], "A": [acts[i] for i in keep]}
    scalars: dict[str, list[torch.Tensor]] = {"log_w_norm": []}
    if grads:
        matrices.update(dW=[], G=[out_grads[i] if i in out_grads else torch.zeros_like(acts[i])
                               for i in keep])
        scalars.update(log_dw_norm=[], log_snip=[])
    if hess:
        matrices["H"] = []
        scalars["log_h_trace"] = []
    sizes: dict[str, list[float]] = {"log_numel": [], "log_fan_in": [], "log_fan_out": []}
    for i in keep:
        module = nodes[i]
        weight = module.weight.detach()
        rows = subsample_index(weight.shape[0], settings.weight_rows, seed, i, "rows")
        cols = subsample_index(weight[0].numel(), settings.weight_cols, seed, i, "cols")
        rows, cols = rows.to(weight.device), cols.to(weight.device)

        def sub(t: torch.Tensor) -> torch.Tensor:
            return t.detach().reshape(t.shape[0], -1).index_select(0, rows).index_select(1, cols)

        matrices["W"].append(sub(weight))
        scalars["log_w_norm"].append(_log(torch.linalg.vector_norm(weight)))
        if grads:
            grad = grads[i].detach()
            matrices["dW"].append(sub(grad))
            scalars["log_dw_norm"].append(_log(torch.linalg.vector_norm(grad)))
            scalars["log_snip"].append(_log((weight * grad).abs().sum()))
        if hess:
            matrices["H"].append(sub(hess[i]))
            scalars["log_h_trace"].append(_log(hess[i].sum().abs()))
        fan_in, fan_out = _fans(module)
        sizes["log_numel"].append(_log(weight.numel()))
        sizes["log_fan_in"].append(_log(fan_in))
        sizes["log_fan_out"].append(_log(fan_out))

    layers = {name: torch.stack(ts).to(device="cpu", dtype=torch.float32)
              for name, ts in matrices.items()}
    for name, values in scalars.items():
        layers[name] = torch.stack(values).to(device="cpu", dtype=torch.float32)
    for name, values in sizes.items():
        layers[name] = torch.tensor(values, dtype=torch.float32)
    layers["depth"] = torch.tensor([i / max(count - 1, 1) for i in keep], dtype=torch.float32)
    net = {"log_flops": _log(macs), "log_layers": _log(count)}
    if grads:  # totals over ALL nodes, kept or not
        net["log_grad_norm"] = float(_log(torch.sqrt(sum(g.detach().double().square().sum() for g in grads))))
        net["log_snip_total"] = float(_log(sum((m.weight.detach() * g.detach()).abs().double().sum()
                                                for m, g in zip(nodes, grads))))
    return NetworkStats(layers=layers, net=net)
