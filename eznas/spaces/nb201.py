"""NAS-Bench-201 search space: parse arch strings and build the benchmark's networks.

The network is the one NAS-Bench-201 trains (the "infer.tiny" macro skeleton): a 3x3 conv +
BN stem, three stages of ``N`` identical cells with ``C``, ``2C`` and ``4C`` channels, a
ResNet basic block with stride 2 between stages, then BN + ReLU, global average pooling and
a linear classifier. A cell is a DAG of 4 nodes; node ``i`` sums one op applied to each of
the nodes ``0..i-1``, and node 3 is the output.

Modules are created in the same order as the reference implementation (xautodl's
``TinyNetwork``), so ``state_dict()`` holds the same tensors, with the same shapes, in the
same order; only the key names differ. Weights therefore transfer by zipping the two
``state_dict()`` value lists, and the same seed draws the same default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from eznas.errors import EznasError

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

NUM_NODES = 4  # node 0 is the cell input, node 3 the cell output

Arch = tuple[tuple[tuple[str, int], ...], ...]

_FORM = (
    "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' (node i lists one edge from each of "
    f"nodes 0..i-1, in order) with op in {', '.join(OPS)}"
)


def _invalid(arch: str, reason: str) -> EznasError:
    """The one-line error for a malformed arch string."""
    return EznasError(f"invalid NB201 arch {arch!r}: {reason}; {_FORM}")


def parse_arch(arch: str) -> Arch:
    """Parse and validate an NB201 architecture string.

    Parameters
    ----------
    arch : a string such as
        ``"|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"``.

    Returns
    -------
    One tuple per node 1..3 of ``(op, input_node)`` pairs; node ``i`` has ``i`` pairs whose
    input nodes are ``0..i-1`` in order.

    Raises
    ------
    EznasError
        If ``arch`` is not a string of that exact form.
    """
    if not isinstance(arch, str):
        raise EznasError(f"an NB201 arch must be a string, got {type(arch).__name__}; {_FORM}")
    parts = arch.split("+")
    if len(parts) != NUM_NODES - 1:
        raise _invalid(arch, f"found {len(parts)} '+'-separated nodes, need {NUM_NODES - 1}")
    nodes = []
    for node, part in enumerate(parts, start=1):
        if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
            raise _invalid(arch, f"node {node} {part!r} must start and end with '|'")
        tokens = part[1:-1].split("|")
        if len(tokens) != node:
            raise _invalid(arch, f"node {node} {part!r} has {len(tokens)} edges, needs {node}")
        edges = []
        for source, token in enumerate(tokens):
            op, sep, index = token.partition("~")
            if not sep:
                raise _invalid(arch, f"edge {token!r} is not of the form 'op~index'")
            if op not in OPS:
                raise _invalid(arch, f"unknown op {op!r} in edge {token!r}")
            if index != str(source):
                raise _invalid(
                    arch, f"edge {token!r} of node {node} must come from node {source}"
                )
            edges.append((op, source))
        nodes.append(tuple(edges))
    return tuple(nodes)


class ReLUConvBN(nn.Module):
    """ReLU, then a bias-free k x k conv (same padding), then BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.relu(x)))


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the input, kept on the autograd graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    """The cell edge op ``name`` on ``channels`` channels (stride 1)."""
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return nn.Identity()
    return Zero()


class Cell(nn.Module):
    """NB201 cell: node i = sum of one op on each earlier node; returns the last node."""

    def __init__(self, arch: Arch, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(make_op(op, channels) for node in arch for op, _ in node)
        # Per node, the (edge index, input node) pairs to sum. `none` edges add exact zeros,
        # so they are skipped unless a node has nothing else (then one Zero gives its zeros).
        plan, first = [], 0
        for node in arch:
            pairs = [(first + k, source) for k, (_, source) in enumerate(node)]
            live = [(e, s) for (e, s), (op, _) in zip(pairs, node) if op != "none"]
            plan.append(tuple(live or pairs[:1]))
            first += len(node)
        self.plan = tuple(plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for pairs in self.plan:
            nodes.append(sum(self.edges[e](nodes[s]) for e, s in pairs))
        return nodes[-1]


class ReductionBlock(nn.Module):
    """ResNet basic block with stride 2; shortcut = 2x2 avg pool + bias-free 1x1 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.pool = nn.AvgPool2d(2, stride=2)
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x)) + self.conv_b(self.conv_a(x))


class Stem(nn.Module):
    """Bias-free 3x3 conv from RGB, then BatchNorm (no activation)."""

    def __init__(self, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Head(nn.Module):
    """BatchNorm, ReLU, global average pool, linear classifier."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.bn(x))).flatten(1))


class NB201Net(nn.Module):
    """NAS-Bench-201 network: stem, 3 stages of N cells joined by reduction blocks, head."""

    def __init__(self, arch: Arch, num_classes: int, C: int, N: int) -> None:
        super().__init__()
        self.stem = Stem(C)
        blocks: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                blocks.append(ReductionBlock(width // 2, width))
            blocks.extend(Cell(arch, width) for _ in range(N))
        self.cells = nn.Sequential(*blocks)
        self.head = Head(4 * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)``."""
        return self.head(self.cells(self.stem(x)))


def build(arch: str, num_classes: int, C: int = 16, N: int = 5) -> nn.Module:
    """Build the NAS-Bench-201 network of ``arch`` with default PyTorch initialisation.

    Parameters
    ----------
    arch : NB201 architecture string (see `parse_arch`).
    num_classes : classifier width (10, 100 or 120 in the benchmark).
    C : channels of the first stage (16 in the benchmark).
    N : cells per stage (5 in the benchmark).

    Returns
    -------
    The network; ``forward(x)`` returns the logits. Parameters are created on the current
    default device (``torch.device`` context) from the global torch RNG.

    Raises
    ------
    EznasError
        If ``arch`` is malformed or a size is not a positive integer.
    """
    cell = parse_arch(arch)
    for name, value in (("num_classes", num_classes), ("C", C), ("N", N)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EznasError(f"NB201 {name} must be a positive integer, got {value!r}")
    return NB201Net(cell, num_classes, C, N)
