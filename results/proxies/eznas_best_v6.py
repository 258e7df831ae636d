"""Zero-cost proxy evolved by eznas.

    score = (log_chan_rank_sum*min(log_chan_rank_sum, exp_clamped(log_snip_total)**2) + log_flops*log_params*(log_params + max_layers(log_chan_rank) + max_layers(log_numel) - sqrt(log_flops) - log_grad_norm)*logdet_sum(gram_linear(znorm(G)))*min(log_chan_rank_sum, exp_clamped(log_snip_total)**4))*(max_layers(log_numel) + max_layers(log_w_norm))

Simplified with facts true on every network of the run's pools (on which both give the same scores)
from the program as evolved, which the code below computes:

    ((max(((log_snip_total + (log_chan_rank_sum * ((naswot + log_grad_norm) - log_grad_norm))) / log_params), (min(log_chan_rank_sum, square(neg(exp_clamped(log_snip_total)))) * log_chan_rank_sum)) + (logdet_sum(linear(znorm(G))) * (relu((((sign(relu(log_chan_rank_sum)) * (log_params - log_grad_norm)) + ((max(log_numel) + max(log_chan_rank)) - sqrt_abs(log_flops))) * (min(log_chan_rank_sum, square(square(exp_clamped(log_snip_total)))) * log_flops))) * log_params))) * (max(log_numel) + max(log_w_norm)))

Usage::

    from this_file import score
    s = score(net, inputs, targets)   # higher = better; the net is left untouched

Works on any torch network of Conv2d/Linear layers (and nn.MultiheadAttention) whose forward
returns the logits (or a tuple ending with them, or a dict with 'logits'). Imports only torch,
math and the standard library. The code below is eznas's probe (version 6),
restricted to the statistics this expression reads, and the primitives it calls.

Run information:
 evolve_tasks: ["nb201:cifar10", "nds:DARTS_in", "nds:Amoeba_in", "nds:NASNet_in"]
 pool_fitness: 0.734106669468973
 pool_taus: {"nb201:cifar10": 0.776378438861258, "nds:Amoeba_in": 0.6597600171549444, "nds:DARTS_in": 0.7810993323876747, "nds:NASNet_in": 0.6346453506874447}
 probe: {"batch_seed": 0, "batch_size": 64, "features": 64, "hessian_probes": 1, "input_kind": "real", "loss": "ce", "max_layers": 16, "net_seed": 0, "weight_cols": 32, "weight_rows": 32}
 rank: 0
 run: "runs/warm_start"
 seed: 0
"""

from collections.abc import Mapping
from functools import lru_cache
from types import SimpleNamespace
import copy
import hashlib
import math
import warnings

from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch
import torch.nn.functional as F

TINY = 1e-30
GRAM_FEATURES = 2048
CHANNEL_SAMPLES = 8
SUBSAMPLE_SEED = 0

def _seed(*parts):
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], 'little') >> 1

def _generator(*parts):
    gen = torch.Generator(device='cpu')
    gen.manual_seed(_seed(*parts))
    return gen

@lru_cache(maxsize=8192)
def subsample_index(size, k, seed, node, role):
    perm = torch.randperm(size, generator=_generator(seed, node, role))
    if size < k:
        perm = perm.repeat(-(-k // size))
    return perm[:k].clone()

def kept_nodes(count, max_layers):
    if max_layers is None or count <= max_layers:
        return list(range(count))
    if max_layers == 1:
        return [0]
    return [round(j * (count - 1) / (max_layers - 1)) for j in range(max_layers)]

def _unit_rows(x):
    x = x.float()
    x = x - x.mean(dim=-1, keepdim=True)
    norm = torch.linalg.vector_norm(x, dim=-1)
    live = norm > norm.amax(dim=-1, keepdim=True).add(1.0).mul_(1e-12)
    return (x, torch.where(live, norm.clamp_min(TINY).reciprocal(), torch.zeros_like(norm)))

def sign_kernel(x):
    s = (x > 0).float().mul_(2.0).sub_(1.0)
    return (s @ s.mT).div_(x.shape[-1]).add_(1.0).mul_(0.5)

def channel_rank(out, samples=CHANNEL_SAMPLES):
    x = out.detach()
    if x.dim() > 2 and x[0, 0].numel() > 1:
        x = x[:samples].flatten(2)
    else:
        x = x.reshape(x.shape[0], -1).T.unsqueeze(0)
    x, inv = _unit_rows(x)
    x = x * inv.unsqueeze(-1)
    small = x @ x.mT if x.shape[1] <= x.shape[2] else x.mT @ x
    trace = (inv > 0).sum(dim=1).float()
    ratio = trace.square() / small.square().sum(dim=(1, 2)).clamp_min(TINY)
    return float(ratio.mean())

def _logdet(m):
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    value = float(torch.linalg.slogdet(m + 1e-06 * eye).logabsdet)
    return value if math.isfinite(value) else -1e+30

def _log(x):
    if isinstance(x, torch.Tensor):
        return torch.log(x.double() + TINY)
    return math.log(x + TINY)

def _per_sample(t, n):
    if t.dim() >= 1 and t.shape[0] == n:
        return t.detach().reshape(n, -1)
    if t.dim() >= 2 and t.shape[1] == n:
        return t.detach().transpose(0, 1).reshape(n, -1)
    if t.dim() >= 1 and t.shape[0] % n == 0:
        return t.detach().reshape(n, -1)
    return None

def _stack(values):
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values).to(device='cpu', dtype=torch.float32)
    return torch.tensor(values, dtype=torch.float32)

def check_batch(inputs, targets, loss):
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(f'inputs: expected one tensor holding the batch [N, ...], got {type(inputs).__name__}; stack the samples into one tensor (torch.stack)')
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(f'inputs: the batch is empty (shape {tuple(inputs.shape)}); pass at least two samples')
    if loss != 'ce':
        return
    if targets is None:
        raise ValueError('targets: None, but the cross-entropy loss needs the class label of every sample; pass an integer tensor [N]')
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f'targets: expected an integer tensor [N] of class labels, got {type(targets).__name__}; convert it with torch.as_tensor')
    if targets.shape != inputs.shape[:1] or targets.is_floating_point() or targets.is_complex():
        raise ValueError(f'targets: expected an integer tensor of shape [{inputs.shape[0]}] (one class label per sample), got {targets.dtype} {tuple(targets.shape)}; pass class indices')

def logits_of(output):
    found = output
    if isinstance(output, Mapping):
        found = output.get('logits', output.get('out'))
    elif isinstance(output, (tuple, list)) and output:
        found = output[-1]
    if not isinstance(found, torch.Tensor):
        kind = f'{type(output).__name__} with keys {list(output)}' if isinstance(output, Mapping) else type(output).__name__
        raise ValueError(f"net: its forward returned {kind}; the probe needs the logits [N, classes]: a tensor, a tuple or list ending with them, or a dict with a 'logits' or 'out' entry; wrap the net")
    return found

def _checked_logits(output, targets, n, loss):
    logits = logits_of(output)
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(f'net: its logits have shape {tuple(logits.shape)}, expected [{n}, classes] for a batch of {n}; wrap the net so that its forward returns one row of class scores per sample')
    if loss == 'ce':
        low, high = (int(targets.min()), int(targets.max()))
        if low < 0 or high >= logits.shape[1]:
            raise ValueError(f"targets: labels must lie in [0, {logits.shape[1]}) for the net's {logits.shape[1]} output classes, got labels in [{low}, {high}]; pass labels of the net's classes")
    return logits

NODE_TYPES = (nn.Conv2d, nn.Linear)

class _SeenAttention(nn.MultiheadAttention):

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
        if query.dim() != 3:
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal)
        width = self.embed_dim
        batch = (lambda t: t) if self.batch_first else lambda t: t.transpose(0, 1)
        if self._qkv_same_embed_dim and query is key and (key is value):
            q, k, v = self.seen_in(batch(query)).chunk(3, dim=-1)
        elif self._qkv_same_embed_dim:
            q, k, v = (self.seen_in(batch(t))[..., j * width:(j + 1) * width] for j, t in enumerate((query, key, value)))
        else:
            biases = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (0.0, 0.0, 0.0)
            q, k, v = (proj(batch(t)) + b for proj, t, b in zip((self.seen_q, self.seen_k, self.seen_v), (query, key, value), biases))
        eye = torch.eye(width, dtype=q.dtype, device=q.device)
        out, weights = F.multi_head_attention_forward(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), width, self.num_heads, None, None, self.bias_k, self.bias_v, self.add_zero_attn, self.dropout, eye, None, training=self.training, key_padding_mask=key_padding_mask, need_weights=need_weights, attn_mask=attn_mask, use_separate_proj_weight=True, q_proj_weight=eye, k_proj_weight=eye, v_proj_weight=eye, average_attn_weights=average_attn_weights, is_causal=is_causal)
        return (batch(self.out_proj(out.transpose(0, 1))), weights)

def _shared_linear(weight):
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device='meta')
    linear.weight = weight
    return linear

def _see_attention(attention):
    attention.__class__ = _SeenAttention
    if attention._qkv_same_embed_dim:
        attention.seen_in = _shared_linear(attention.in_proj_weight)
        attention.seen_in.bias = attention.in_proj_bias
    else:
        attention.seen_q = _shared_linear(attention.q_proj_weight)
        attention.seen_k = _shared_linear(attention.k_proj_weight)
        attention.seen_v = _shared_linear(attention.v_proj_weight)

class _Hardsigmoid(nn.Hardsigmoid):

    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0

class _Hardswish(nn.Hardswish):

    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0

_TWICE_DIFFERENTIABLE = {nn.Hardsigmoid: _Hardsigmoid, nn.Hardswish: _Hardswish}

def private_copy(net):
    memo = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in net.parameters()}
    for module in net.modules():
        for name, value in vars(module).items():
            if 'hooks' in name and isinstance(value, dict):
                memo[id(value)] = type(value)()
    try:
        work = copy.deepcopy(net, memo)
    except Exception as e:
        raise ValueError(f'net: the probe works on a private copy and copy.deepcopy failed ({type(e).__name__}: {e}); make the net deep-copyable') from None
    work.eval()
    for module in list(work.modules()):
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.train()
        if type(module) is nn.MultiheadAttention:
            _see_attention(module)
        if type(module) in _TWICE_DIFFERENTIABLE:
            module.__class__ = _TWICE_DIFFERENTIABLE[type(module)]
    return work

def redraw_classifier(head):
    weight = head.weight
    bound = 1.0 / math.sqrt(weight[0].numel())
    values = torch.rand(weight.shape, generator=_generator(SUBSAMPLE_SEED, 'classifier'), dtype=torch.float64)
    head.weight = nn.Parameter(values.mul_(2 * bound).sub_(bound).to(device=weight.device, dtype=weight.dtype), requires_grad=False)
    if getattr(head, 'bias', None) is not None:
        head.bias = nn.Parameter(torch.zeros_like(head.bias), requires_grad=False)

def _weight_matrices(module):
    return [p for name, p in module.named_parameters(recurse=False) if 'weight' in name and p.dim() > 1]

class _Recorder:

    def __init__(self, work, measures, n, need_grad):
        self.measures = measures
        self.n = n
        self.need_grad = need_grad
        self.nodes = []
        self.macs = 0.0
        self.grads = {}
        self._index = {}
        self._ran = []
        self._no_layout = set()
        self._tensor_hooks = []
        self._hooks = []
        for module in work.modules():
            if isinstance(module, NODE_TYPES):
                module.weight.requires_grad_(True)
                self._hooks.append(module.register_forward_hook(self._on_output))
            elif _weight_matrices(module):
                self._hooks.append(module.register_forward_hook(lambda m, args, out: self._ran.append(m)))

    def forward(self, work, x):
        try:
            return work(x)
        except ValueError as e:
            if 'Expected more than 1' not in str(e):
                raise
            raise ValueError(f"inputs: a batch of {len(x)} is too small for the net's normalisation layers, which the probe runs on batch statistics ({e}); pass more samples") from None
        finally:
            for hook in self._hooks:
                hook.remove()

    def release(self):
        for hook in self._tensor_hooks:
            hook.remove()

    def _on_output(self, module, args, out):
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

    def _on_grad(self, index, grad):
        flat = _per_sample(grad, self.n)
        for measure in self.measures:
            measure.on_grad(index, flat)

    def unseen(self):
        seen = {id(m.weight) for m in self.nodes}
        names = {next((c.__name__ for c in type(m).__mro__ if not c.__name__.startswith('_'))) for m in self._ran if any((id(p) not in seen for p in _weight_matrices(m)))}
        return sorted(names | self._no_layout)

class _Measure:
    provides = frozenset()
    grad = False
    hessian = False
    all_grads = False

    def __init__(self, settings, wanted):
        self.settings = settings
        self.values = {}

    def on_output(self, index, out, flat):
        pass

    def on_grad(self, index, flat):
        pass

    def finish(self, rec, keep, layers, scalars):
        pass

def _gram_input(flat, index):
    if flat.shape[1] <= GRAM_FEATURES:
        return flat
    return flat.index_select(1, subsample_index(flat.shape[1], GRAM_FEATURES, SUBSAMPLE_SEED, index, 'K').to(flat.device))

def _columns(flat, index, features):
    return flat.index_select(1, subsample_index(flat.shape[1], features, SUBSAMPLE_SEED, index, 'A').to(flat.device))

class _OutputGrads(_Measure):
    provides = frozenset({'G'})
    grad = True

    def on_output(self, index, out, flat):
        self.values[index] = torch.zeros(flat.shape[0], self.settings.features, dtype=flat.dtype, device=flat.device)

    def on_grad(self, index, flat):
        if flat is not None:
            self.values[index] = _columns(flat, index, self.settings.features).mul_(flat.shape[0])

    def finish(self, rec, keep, layers, scalars):
        layers['G'] = _stack([self.values[i] for i in keep])

class _SignKernel(_Measure):
    provides = frozenset({'KS', 'naswot'})

    def on_output(self, index, out, flat):
        self.values[index] = sign_kernel(_gram_input(flat, index))

    def finish(self, rec, keep, layers, scalars):
        layers['KS'] = _stack([self.values[i] for i in keep])
        scalars['naswot'] = _logdet(sum((ks.double() for ks in self.values.values()))) / rec.n

class _ChannelRank(_Measure):
    provides = frozenset({'log_chan_rank', 'log_chan_rank_sum'})

    def on_output(self, index, out, flat):
        self.values[index] = channel_rank(out)

    def finish(self, rec, keep, layers, scalars):
        layers['log_chan_rank'] = _stack([_log(self.values[i]) for i in keep])
        scalars['log_chan_rank_sum'] = _log(sum(self.values.values()))

def _weight_rows_cols(weight, index, settings):
    rows = subsample_index(weight.shape[0], settings.weight_rows, SUBSAMPLE_SEED, index, 'rows').to(weight.device)
    cols = subsample_index(weight[0].numel(), settings.weight_cols, SUBSAMPLE_SEED, index, 'cols').to(weight.device)
    return lambda t: t.detach().reshape(t.shape[0], -1).index_select(0, rows).index_select(1, cols)

class _Weights(_Measure):
    provides = frozenset({'W', 'log_w_norm'})

    def finish(self, rec, keep, layers, scalars):
        weights = [rec.nodes[i].weight.detach() for i in keep]
        layers['W'] = _stack([_weight_rows_cols(w, i, self.settings)(w) for i, w in zip(keep, weights)])
        layers['log_w_norm'] = _stack([_log(torch.linalg.vector_norm(w)) for w in weights])

class _GradTotals(_Measure):
    provides = frozenset({'log_grad_norm', 'log_snip_total'})
    grad = True
    all_grads = True

    def finish(self, rec, keep, layers, scalars):
        pairs = [(rec.nodes[i].weight.detach(), g.detach()) for i, g in rec.grads.items()]
        scalars['log_grad_norm'] = float(_log(torch.sqrt(sum((g.double().square().sum() for _, g in pairs)))))
        scalars['log_snip_total'] = float(_log(sum(((w * g).abs().double().sum() for w, g in pairs))))

def _fans(module):
    weight = module.weight
    receptive = weight[0, 0].numel()
    return (weight[0].numel(), weight.shape[0] * receptive // getattr(module, 'groups', 1))

def _backward(rec, logits, targets, loss_kind, inputs, create_graph):
    if loss_kind == 'ce':
        loss = F.cross_entropy(logits, targets)
    else:
        loss = logits.sum() / logits.shape[0]
    weights = [rec.nodes[i].weight for i in inputs]
    try:
        raw = torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True) if loss.requires_grad else [None] * len(weights)
    finally:
        rec.release()
    rec.grads = {i: torch.zeros_like(w) if g is None else g for i, w, g in zip(inputs, weights, raw)}

def measure(net, inputs, targets, settings, wanted):
    check_batch(inputs, targets, settings.loss)
    first = next(net.parameters(), None)
    device = first.device if first is not None else inputs.device
    x = inputs.detach().to(device, copy=True)
    y = targets.to(device) if targets is not None and settings.loss == 'ce' else None
    n = len(x)
    measures = [kind(settings, wanted) for kind in MEASURES if kind.provides & wanted]
    need_hessian = any((m.hessian for m in measures))
    need_grad = any((m.grad for m in measures))
    log_params = _log(float(sum((p.numel() for p in net.parameters()))))
    work = private_copy(net)
    devices = [device.index or 0] if device.type == 'cuda' else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode(False), torch.set_grad_enabled(need_grad), sdpa_kernel(SDPBackend.MATH):
        dry = _Recorder(work, [], len(x[:2]), False)
        with torch.no_grad():
            output = dry.forward(work, x[:2])
        if not dry.nodes:
            raise ValueError('net: no Conv2d or Linear layer ran in its forward pass; the probe measures those layers')
        _checked_logits(output, y, len(x[:2]), settings.loss)
        redraw_classifier(dry.nodes[-1])
        rec = _Recorder(work, measures, n, need_grad)
        logits = _checked_logits(rec.forward(work, x), y, n, settings.loss)
        keep = kept_nodes(len(rec.nodes), settings.max_layers)
        if need_grad:
            every = any((m.all_grads for m in measures))
            _backward(rec, logits, y, settings.loss, list(range(len(rec.nodes))) if every else keep, need_hessian)
        del logits
        layers = {}
        scalars = {}
        for m in measures:
            m.finish(rec, keep, layers, scalars)
    unseen = rec.unseen()
    if unseen:
        warnings.warn(f"probe: the weights of {', '.join(unseen)} layers are not seen (the probe measures Conv2d, Linear and MultiheadAttention weights); their statistics are left out", stacklevel=3)
    fans = [_fans(rec.nodes[i]) for i in keep]
    layers['log_numel'] = _stack([_log(rec.nodes[i].weight.numel()) for i in keep])
    layers['log_fan_in'] = _stack([_log(a) for a, _ in fans])
    layers['log_fan_out'] = _stack([_log(b) for _, b in fans])
    layers['depth'] = _stack([i / max(len(rec.nodes) - 1, 1) for i in keep])
    scalars.update(log_params=float(log_params), log_flops=_log(rec.macs), log_layers=_log(len(rec.nodes)))
    return (layers, scalars)

MEASURES = (_OutputGrads, _SignKernel, _ChannelRank, _Weights, _GradTotals, )

BIG = 1e+30
EPS = 1e-08
MAX_EXP = 69.07755278982137
RIDGE = 1e-06
TOL = 1e-06

def _finite(y):
    return y.clamp_(-BIG, BIG).nan_to_num_(nan=0.0)

def _max_abs(x, dim):
    return torch.maximum(x.amax(dim=dim, keepdim=True), x.amin(dim=dim, keepdim=True).neg_())

def _amax_scale(x, dim):
    return _max_abs(x, dim).clamp_min_(1.0 / BIG)

def _seg_sum(x, layers):
    out = x.new_zeros((layers.n_nets,) + tuple(x.shape[1:]))
    return _finite(out.index_add_(0, layers.seg, x))

def agg_max(x, layers):
    return x.new_zeros(layers.n_nets).scatter_reduce_(0, layers.seg, x, 'amax', include_self=False)

def logdet_sum(x, layers):
    return logdet(_seg_sum(x, layers))

def square(x):
    return _finite(x * x)

def sqrt_abs(x):
    return torch.abs(x).sqrt_()

def exp_clamped(x):
    return x.clamp(max=MAX_EXP).exp_()

def sign(x):
    return torch.sign(x)

def relu(x):
    return torch.relu(x)

def neg(x):
    return torch.neg(x)

def znorm(x):
    y = x / _amax_scale(x, (-2, -1))
    mean = y.mean(dim=(-2, -1), keepdim=True)
    std = torch.linalg.vector_norm(y.sub_(mean), dim=(-2, -1), keepdim=True)
    std.div_(math.sqrt(x.shape[-2] * x.shape[-1]))
    return y.div_(std.masked_fill_(std <= mean.abs_().mul_(TOL), math.inf))

def add(x, y):
    return _finite(x + y)

def sub(x, y):
    return _finite(x - y)

def mul(x, y):
    return _finite(x * y)

def div_safe(x, y):
    small = (y > -EPS) & (y < EPS)
    return _finite(torch.where(small, torch.sign(x), x / y))

def minimum(x, y):
    return torch.minimum(x, y)

def maximum(x, y):
    return torch.maximum(x, y)

def gram_linear(x):
    scale = _amax_scale(x, (-2, -1))
    y = x / scale
    return _finite(torch.matmul(y, y.mT).mul_(scale).mul_(scale / x.shape[-1]))

def logdet(x):
    scale = _amax_scale(x, (-2, -1))
    y = x / scale
    y.diagonal(dim1=-2, dim2=-1).add_(RIDGE / scale[..., 0])
    logabs = torch.linalg.slogdet(y).logabsdet
    return _finite(logabs.add_(torch.log(scale[..., 0, 0]).mul_(x.shape[-1])))


EXPRESSION = 'n_mul(n_add(n_max(n_div_safe(n_add(log_snip_total, n_mul(log_chan_rank_sum, n_sub(n_add(naswot, log_grad_norm), log_grad_norm))), log_params), n_mul(n_min(log_chan_rank_sum, n_square(n_neg(n_exp_clamped(log_snip_total)))), log_chan_rank_sum)), n_mul(logdet_sum(gram_linear(a_znorm(G))), n_mul(n_relu(n_mul(n_add(n_mul(n_sign(n_relu(log_chan_rank_sum)), n_sub(log_params, log_grad_norm)), n_sub(n_add(agg_max(log_numel), agg_max(log_chan_rank)), n_sqrt_abs(log_flops))), n_mul(n_min(log_chan_rank_sum, n_square(n_square(n_exp_clamped(log_snip_total)))), log_flops))), log_params))), n_add(agg_max(log_numel), agg_max(log_w_norm)))'
SETTINGS = SimpleNamespace(features=64, weight_rows=32, weight_cols=32, max_layers=16, hessian_probes=1, loss='ce')
NEEDS = frozenset(['G', 'depth', 'log_chan_rank', 'log_chan_rank_sum', 'log_flops', 'log_grad_norm', 'log_numel', 'log_params', 'log_snip_total', 'log_w_norm', 'naswot'])


def _program(t, layers, n_layers):
    """Evaluate the evolved expression on one network's statistics ``t``."""
    v0 = add(t['naswot'], t['log_grad_norm'])
    v1 = sub(v0, t['log_grad_norm'])
    v2 = mul(t['log_chan_rank_sum'], v1)
    v3 = add(t['log_snip_total'], v2)
    v4 = div_safe(v3, t['log_params'])
    v5 = exp_clamped(t['log_snip_total'])
    v6 = neg(v5)
    v7 = square(v6)
    v8 = minimum(t['log_chan_rank_sum'], v7)
    v9 = mul(v8, t['log_chan_rank_sum'])
    v10 = maximum(v4, v9)
    v11 = znorm(t['G'])
    v12 = gram_linear(v11)
    v13 = logdet_sum(v12, layers)
    v14 = relu(t['log_chan_rank_sum'])
    v15 = sign(v14)
    v16 = sub(t['log_params'], t['log_grad_norm'])
    v17 = mul(v15, v16)
    v18 = agg_max(t['log_numel'], layers)
    v19 = agg_max(t['log_chan_rank'], layers)
    v20 = add(v18, v19)
    v21 = sqrt_abs(t['log_flops'])
    v22 = sub(v20, v21)
    v23 = add(v17, v22)
    v24 = square(v5)
    v25 = square(v24)
    v26 = minimum(t['log_chan_rank_sum'], v25)
    v27 = mul(v26, t['log_flops'])
    v28 = mul(v23, v27)
    v29 = relu(v28)
    v30 = mul(v29, t['log_params'])
    v31 = mul(v13, v30)
    v32 = add(v10, v31)
    v33 = agg_max(t['log_w_norm'], layers)
    v34 = add(v18, v33)
    v35 = mul(v32, v34)
    return v35


def score(net, inputs, targets) -> float:
    """The proxy's score of ``net`` on the batch ``(inputs, targets)``; higher = better."""
    layers, scalars = measure(net, inputs, targets, SETTINGS, NEEDS)
    t = dict(layers)
    t.update({k: torch.tensor([float(v)], dtype=torch.float32) for k, v in scalars.items()})
    n_layers = layers["depth"].shape[0]
    layers = SimpleNamespace(seg=torch.zeros(n_layers, dtype=torch.long), n_nets=1, depth=layers["depth"])
    with torch.no_grad():
        return float(_program(t, layers, n_layers)[0])
