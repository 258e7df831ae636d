"""NAS-Bench-101 (Ying et al., ICML 2019): parse a NASLib key and build the CIFAR-10 network.

An architecture is a cell: a DAG of at most 7 vertices, given as an upper-triangular
adjacency matrix and one op per vertex. Vertex 0 is the cell input, the last vertex its
output; every other vertex applies ``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or ``maxpool3x3``
to the sum of its inputs. The NASLib key (``../shared/data/naslib/PROVENANCE.md``) is the
string of a 56-tuple: the 7x7 matrix row-major, then 7 op codes indexing `OPS`.

The network is the benchmark's own (its TensorFlow ``model_builder``): a 3x3 conv-BN-ReLU stem
with 128 channels, 3 stacks of 3 cells, a 2x2 stride-2 max-pool and doubled channels before
stacks 2 and 3, global average pooling and a linear classifier. Inside a cell:

- Pruning: vertices that are not on a path from input to output are removed first (a key
  may carry dangling vertices; the benchmark trains and reports the pruned cell).
- Channels (`vertex_channels`): the cell's output channels are split evenly over the
  vertices that feed the output, the first ``c_out % k`` of them getting one more; every
  other vertex takes the largest channel count among its successors.
- A vertex sums its inputs: an edge from the cell input goes through a 1x1 conv-BN-ReLU
  projection to the vertex's channels; an edge from another vertex with one channel more
  is truncated to its first channels.
- The output concatenates the vertices that feed it, in vertex order, and adds a projection
  of the cell input if the input feeds the output directly (or is that projection alone when
  nothing else feeds it).

Parameters (``count_params``) equal the ``params`` of every entry of the NASLib sample
exactly: bias-free convolutions, BatchNorm scale and shift, and the classifier's weight and
bias. The PyPI port ``nasbench-pytorch`` 1.3.1 counts ``9 * (2 + m)`` more, where ``m`` is the
number of vertices of the pruned cell (output included) that the input does not feed: each of
its cells holds an unused one-element ``Placeholder`` parameter for vertex 0's op, one for
vertex 0's input projection and one per such vertex. Its convolutions, BatchNorms and
classifier equal ours tensor for tensor (``tests/test_nb101_space.py`` checks both).

Initialisation follows the benchmark's TensorFlow code: convolutions draw from a truncated
normal with standard deviation ``sqrt(1 / fan_in) / 0.87962566`` (TF's
``variance_scaling_initializer``), the classifier's weight from Glorot uniform, biases and BN
shifts are 0, BN scales 1. BatchNorm uses TF's epsilon 1e-5 and decay 0.997 (torch momentum
0.003). Nothing is initialised on the ``meta`` device, whose tensors hold no values.
"""

from __future__ import annotations

import ast
import math

import torch
from torch import nn

from eznas.errors import EznasError

OPS = ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")
NUM_VERTICES = 7
STEM_CHANNELS = 128
NUM_STACKS = 3
CELLS_PER_STACK = 3
BN_EPS = 1e-5
BN_MOMENTUM = 1.0 - 0.997  # TF decay 0.997
_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]

Matrix = tuple[tuple[int, ...], ...]

_FORM = (f"expected the string of a {NUM_VERTICES ** 2 + NUM_VERTICES}-tuple of integers: the "
         f"{NUM_VERTICES}x{NUM_VERTICES} upper-triangular 0/1 adjacency matrix row-major, then "
         f"{NUM_VERTICES} op codes (input first, output last) indexing {list(OPS)}")


def _invalid(key: object, reason: str) -> EznasError:
    """The one-line error for a malformed key."""
    return EznasError(f"invalid NB101 arch {key!r}: {reason}; {_FORM}")


def parse_key(key: str) -> tuple[Matrix, tuple[str, ...]]:
    """Parse and validate a NASLib NAS-Bench-101 key.

    Parameters
    ----------
    key : e.g. ``"(0, 1, 0, ..., 0, 2, 4, 3, 4, 2, 1)"`` (49 matrix entries, 7 op codes).

    Returns
    -------
    matrix : [7][7] tuple of 0/1, ``matrix[i][j] = 1`` for an edge i -> j (i < j).
    ops : the 7 op names, ``"input"`` first and ``"output"`` last.

    Raises
    ------
    EznasError
        If ``key`` is not of that form (before any pruning).
    """
    if not isinstance(key, str):
        raise _invalid(key, f"an NB101 arch must be a string, got {type(key).__name__}")
    try:
        values = ast.literal_eval(key.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise _invalid(key, "not a tuple literal") from None
    n = NUM_VERTICES
    if (not isinstance(values, tuple) or len(values) != n * n + n
            or any(type(v) is not int for v in values)):
        raise _invalid(key, f"need a tuple of {n * n + n} integers")
    flat, codes = values[: n * n], values[n * n:]
    matrix = tuple(tuple(flat[i * n: (i + 1) * n]) for i in range(n))
    for i in range(n):
        for j in range(n):
            if matrix[i][j] not in (0, 1) or (j <= i and matrix[i][j]):
                raise _invalid(key, f"matrix entry ({i}, {j}) is {matrix[i][j]}; entries are 0 "
                                    f"or 1, and 0 on and below the diagonal")
    if codes[0] != OPS.index("input") or codes[-1] != OPS.index("output"):
        raise _invalid(key, f"op codes must start with {OPS.index('input')} (input) and end "
                            f"with {OPS.index('output')} (output), got {codes}")
    if any(not 2 <= c < len(OPS) for c in codes[1:-1]):
        raise _invalid(key, f"inner op codes must be in 2..{len(OPS) - 1}, got {codes[1:-1]}")
    return matrix, tuple(OPS[c] for c in codes)


def prune(matrix: Matrix, ops: tuple[str, ...], key: object) -> tuple[Matrix, tuple[str, ...]]:
    """Remove the vertices that are not on a path from the input to the output.

    Parameters
    ----------
    matrix : [V][V] upper-triangular adjacency matrix.
    ops : the V op names.
    key : names the architecture in the error message.

    Returns
    -------
    The matrix and ops of the kept vertices, in their original order.

    Raises
    ------
    EznasError
        If no path leads from the input to the output (NB101 has no such cell).
    """
    n = len(ops)
    from_input, to_output = {0}, {n - 1}
    for j in range(1, n):
        if any(matrix[i][j] and i in from_input for i in range(j)):
            from_input.add(j)
    for i in range(n - 2, -1, -1):
        if any(matrix[i][j] and j in to_output for j in range(i + 1, n)):
            to_output.add(i)
    if n - 1 not in from_input:
        raise _invalid(key, "no path leads from the cell input (vertex 0) to its output "
                            f"(vertex {n - 1})")
    keep = sorted(from_input & to_output)
    return tuple(tuple(matrix[i][j] for j in keep) for i in keep), tuple(ops[i] for i in keep)


def vertex_channels(c_in: int, c_out: int, matrix: Matrix) -> list[int]:
    """Output channels of every vertex of a pruned cell (the NB101 channel-splitting rule).

    Parameters
    ----------
    c_in, c_out : channels of the cell input and output.
    matrix : [V][V] adjacency matrix of a pruned cell.

    Returns
    -------
    list of V ints: ``c_in`` for vertex 0, ``c_out`` for vertex V-1. The vertices feeding the
    output share ``c_out`` (the first ``c_out % k`` of the ``k`` of them get one more); any
    other inner vertex takes the maximum over the inner vertices it feeds.
    """
    n = len(matrix)
    channels = [c_in] + [0] * (n - 2) + [c_out]
    feeding = [v for v in range(1, n - 1) if matrix[v][n - 1]]
    for rank, v in enumerate(feeding):
        channels[v] = c_out // len(feeding) + (rank < c_out % len(feeding))
    for v in range(n - 2, 0, -1):
        if not matrix[v][n - 1]:
            channels[v] = max(channels[d] for d in range(v + 1, n - 1) if matrix[v][d])
    return channels


class ConvBNReLU(nn.Sequential):
    """Bias-free ``kernel`` x ``kernel`` convolution (same padding), BatchNorm, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM),
            nn.ReLU(),
        )


def make_op(name: str, channels: int) -> nn.Module:
    """The inner-vertex op ``name`` on ``channels`` channels (stride 1, shape-preserving)."""
    if name == "conv3x3-bn-relu":
        return ConvBNReLU(channels, channels, 3)
    if name == "conv1x1-bn-relu":
        return ConvBNReLU(channels, channels, 1)
    return nn.MaxPool2d(3, stride=1, padding=1)


class Cell(nn.Module):
    """One NB101 cell of a pruned ``matrix`` and ``ops``, from ``c_in`` to ``c_out`` channels.

    ``forward``: [N, c_in, H, W] -> [N, c_out, H, W].
    """

    def __init__(self, matrix: Matrix, ops: tuple[str, ...], c_in: int, c_out: int) -> None:
        super().__init__()
        n = len(ops)
        self.channels = vertex_channels(c_in, c_out, matrix)
        self.ops = nn.ModuleList(make_op(ops[v], self.channels[v]) for v in range(1, n - 1))
        # Input projections, keyed by the vertex they feed (the output vertex included).
        self.projections = nn.ModuleDict({
            str(v): ConvBNReLU(c_in, self.channels[v], 1) for v in range(1, n) if matrix[0][v]
        })
        self.sources = [[u for u in range(1, v) if matrix[u][v]] for v in range(n)]
        self.to_output = [v for v in range(1, n - 1) if matrix[v][n - 1]]
        self.out_vertex = str(n - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the inner vertices in order, then concatenate (and add) into the output."""
        states = [x]
        for v, op in enumerate(self.ops, start=1):
            c = self.channels[v]
            terms = [states[u][:, :c] for u in self.sources[v]]  # [:, :c] truncates a +1 vertex
            if str(v) in self.projections:
                terms.append(self.projections[str(v)](x))
            states.append(op(sum(terms[1:], terms[0])))
        parts = [states[v] for v in self.to_output]
        out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0] if parts else None
        if self.out_vertex in self.projections:
            projected = self.projections[self.out_vertex](x)
            out = projected if out is None else out + projected
        return out


class NB101Net(nn.Module):
    """Stem, ``NUM_STACKS`` stacks of ``CELLS_PER_STACK`` cells, global pool, classifier."""

    def __init__(self, matrix: Matrix, ops: tuple[str, ...], num_classes: int) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, STEM_CHANNELS, 3)
        layers: list[nn.Module] = []
        c_in = c_out = STEM_CHANNELS
        for stack in range(NUM_STACKS):
            if stack:
                layers.append(nn.MaxPool2d(2, stride=2))
                c_out *= 2
            for _ in range(CELLS_PER_STACK):
                layers.append(Cell(matrix, ops, c_in, c_out))
                c_in = c_out
        self.cells = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of images ``[N, 3, H, W]``."""
        return self.classifier(self.pool(self.cells(self.stem(x))).flatten(1))


def init_weights(m: nn.Module) -> None:
    """NB101's TF initialisation: truncated-normal fan-in convs, Glorot-uniform classifier."""
    if isinstance(m, nn.Conv2d):
        std = math.sqrt(1.0 / (m.in_channels * m.kernel_size[0] * m.kernel_size[1])) / _TRUNCATED_NORMAL_STD
        nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)


def build(key: str, num_classes: int = 10) -> NB101Net:
    """Build the NAS-Bench-101 network of a NASLib key.

    Parameters
    ----------
    key : the NASLib key string (see `parse_key`); dangling vertices are pruned.
    num_classes : classifier width (10 in the benchmark).

    Returns
    -------
    NB101Net
        ``forward(x)`` maps [N, 3, H, W] to logits [N, num_classes] (H = W = 32 in the
        benchmark); created on the current default device from the global torch RNG.

    Raises
    ------
    EznasError
        If ``key`` is malformed or its output is not connected to its input.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise EznasError(f"NB101 num_classes must be a positive integer, got {num_classes!r}")
    matrix, ops = prune(*parse_key(key), key)
    net = NB101Net(matrix, ops, num_classes)
    if not any(p.is_meta for p in net.parameters()):
        net.apply(init_weights)
    return net

