"""NDS cell search spaces (DARTS, ENAS, Amoeba, NASNet, PNAS) as pycls-style modules.

A genotype lists ``[op, input_index]`` pairs, two per intermediate node, for a normal and a
reduction cell, plus the states each cell concatenates as its output. State 0 and 1 are the
two preprocessed cell inputs; node ``k`` is state ``k + 2``. The network layout follows the
NDS / pycls ``NetworkImageNet`` (stride-8 stem, 1000 classes) and ``NetworkCIFAR`` (3x3 stem of
``3 * C`` channels) classes. The auxiliary head and drop path only matter during training and
are not built: ``forward`` returns the logits of the main head.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from eznas.errors import EznasError


class ReLUConvBN(nn.Sequential):
    """ReLU, then a bias-free convolution, then BatchNorm (learnable scale/shift if ``affine``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, (dilated) depthwise convolution, pointwise convolution, BatchNorm."""

    def __init__(self, c: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, kernel, stride=stride, padding=padding, dilation=dilation,
                      groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable convolutions; only the first one strides."""

    def __init__(self, c: int, kernel: int, stride: int, dilation: int = 1,
                 affine: bool = True) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            DilConv(c, kernel, stride, padding, dilation, affine),
            DilConv(c, kernel, 1, padding, dilation, affine),
        )


class FactorizedConv(nn.Sequential):
    """ReLU, a 1xk then a kx1 convolution, BatchNorm (``conv_kx1_1xk``)."""

    def __init__(self, c: int, kernel: int, stride: int, affine: bool = True) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(c, c, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convolutions, concatenated."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the even-offset and odd-offset subsamplings."""
        x = self.relu(x)
        # Odd sizes: the shifted path sees one row/column fewer; pad it back to the same size.
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """The ``none`` op: zeros at the output resolution."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return zeros shaped like the (strided) input."""
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def _max_pool(kernel: int) -> Callable[[int, int, bool], nn.Module]:
    """Constructor of a "same"-padded ``kernel`` x ``kernel`` max-pool op."""
    return lambda c, stride, affine: nn.MaxPool2d(kernel, stride=stride, padding=kernel // 2)


# Op name -> constructor ``(channels, stride, affine) -> module``; every op of the NDS cell
# files. ``affine`` says whether the op's BatchNorms learn a scale and shift.
OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "skip_connect": lambda c, stride, affine: (nn.Identity() if stride == 1
                                               else FactorizedReduce(c, c, affine)),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1,
                                                           count_include_pad=False),
    "max_pool_3x3": _max_pool(3),
    "max_pool_5x5": _max_pool(5),
    "max_pool_7x7": _max_pool(7),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, 3, stride, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, 5, stride, affine=affine),
    "sep_conv_7x7": lambda c, stride, affine: SepConv(c, 7, stride, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, 5, stride, 4, 2, affine),
    "dil_sep_conv_3x3": lambda c, stride, affine: SepConv(c, 3, stride, 2, affine),
    "conv_1x1": lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine),
    "conv_3x3": lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine),
    "conv_3x1_1x3": lambda c, stride, affine: FactorizedConv(c, 3, stride, affine),
    "conv_7x1_1x7": lambda c, stride, affine: FactorizedConv(c, 7, stride, affine),
}


class Cell(nn.Module):
    """A normal or reduction cell: preprocess two inputs, build the nodes, concatenate.

    ``op_affine`` applies to the BatchNorms inside the node ops; the preprocessing ones always
    learn a scale and shift.
    """

    def __init__(self, ops: Sequence[tuple[str, int]], concat: Sequence[int], c_pp: int,
                 c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 op_affine: bool = True) -> None:
        super().__init__()
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_pp, c)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.indices = [index for _, index in ops]
        self.concat = list(concat)
        self.ops = nn.ModuleList(
            OPS[name](c, 2 if reduction and index < 2 else 1, op_affine) for name, index in ops
        )

    @property
    def multiplier(self) -> int:
        """Output channels as a multiple of the cell's channel count ``c``."""
        return len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Compute every node from two earlier states and concatenate the output states."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(0, len(self.ops), 2):
            a, b = self.ops[k], self.ops[k + 1]
            states.append(a(states[self.indices[k]]) + b(states[self.indices[k + 1]]))
        return torch.cat([states[i] for i in self.concat], dim=1)


class StemImageNet(nn.Module):
    """Stride-8 stem: two 3x3 stride-2 convs to ``c``, then ReLU and one more 3x3 stride-2 conv."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = ReLUConvBN(c, c, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the two states fed to the first cell (after stem0 and after stem1)."""
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


class StemCifar(nn.Sequential):
    """CIFAR stem: one 3x3 stride-1 conv to ``c`` channels and BatchNorm."""

    def __init__(self, c: int) -> None:
        super().__init__(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


class NetworkCell(nn.Module):
    """A stack of ``depth`` cells with reductions at ``depth // 3`` and ``2 * depth // 3``."""

    def __init__(self, genotype: dict, width: int, depth: int, imagenet: bool,
                 num_classes: int, op_affine: bool = True) -> None:
        super().__init__()
        self.imagenet = imagenet
        if imagenet:
            self.stem: nn.Module = StemImageNet(width)
            c_pp, c_p, reduction_prev = width, width, True
        else:
            self.stem = StemCifar(3 * width)
            c_pp, c_p, reduction_prev = 3 * width, 3 * width, False
        c = width
        self.cells = nn.ModuleList()
        for i in range(depth):
            reduction = i in (depth // 3, 2 * depth // 3)
            c = 2 * c if reduction else c
            kind = "reduce" if reduction else "normal"
            cell = Cell(genotype[kind], genotype[f"{kind}_concat"], c_pp, c_p, c,
                        reduction, reduction_prev, op_affine)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``[N, num_classes]``."""
        if self.imagenet:
            s0, s1 = self.stem(x)
        else:
            s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1).flatten(1))


def _check_genotype(genotype: object, where: str) -> None:
    """Raise `EznasError` unless ``genotype`` is a well-formed cell genotype with known ops."""
    if not isinstance(genotype, dict):
        raise EznasError(f"{where}: 'genotype' must be a dict, got {type(genotype).__name__}")
    for kind in ("normal", "reduce"):
        ops, concat = genotype.get(kind), genotype.get(f"{kind}_concat")
        if not isinstance(ops, list) or not ops or len(ops) % 2:
            raise EznasError(
                f"{where}: genotype.{kind} must be a non-empty list of [op, input] pairs, "
                f"two per node"
            )
        for k, pair in enumerate(ops):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not isinstance(pair[0], str) or type(pair[1]) is not int):
                raise EznasError(f"{where}: genotype.{kind}[{k}] must be [op name, input index], "
                                 f"got {pair!r}")
            name, index = pair
            if name not in OPS:
                raise EznasError(f"{where}: unknown op {name!r} in genotype.{kind}[{k}]; "
                                 f"known ops: {', '.join(sorted(OPS))}")
            if not 0 <= index < 2 + k // 2:
                raise EznasError(f"{where}: genotype.{kind}[{k}] reads state {index}, but node "
                                 f"{k // 2} can only read states 0..{1 + k // 2}")
        n_states = 2 + len(ops) // 2
        if (not isinstance(concat, list) or not concat
                or any(type(i) is not int or not 0 <= i < n_states for i in concat)):
            raise EznasError(f"{where}: genotype.{kind}_concat must be a non-empty list of state "
                             f"indices in 0..{n_states - 1}, got {concat!r}")


def build_cell_network(net: dict, imagenet: bool, num_classes: int,
                       where: str = "NDS net", op_affine: bool = True) -> NetworkCell:
    """Build a cell-space network from an NDS ``net`` dict.

    Parameters
    ----------
    net : dict with ``genotype``, ``width`` and ``depth`` (``aux`` and ``drop_prob`` are
        training-only and ignored).
    imagenet : ImageNet layout (stride-8 stem) if true, else the CIFAR layout.
    num_classes : classifier width.
    where : names the entry in error messages (e.g. ``"DARTS_in.json entry 3"``).
    op_affine : whether the BatchNorms inside the node ops learn a scale and shift (NDS: yes;
        `eznas.spaces.nb301` builds them without, as the NB301 sample counts parameters).

    Returns
    -------
    NetworkCell
        The network; ``forward`` returns logits.
    """
    _check_genotype(net.get("genotype"), where)
    for key in ("width", "depth"):
        value = net.get(key)
        if type(value) is not int or value < (2 if key == "width" else 1):
            raise EznasError(f"{where}: {key!r} must be a positive integer"
                             f"{' >= 2' if key == 'width' else ''}, got {value!r}")
    return NetworkCell(net["genotype"], net["width"], net["depth"], imagenet, num_classes,
                       op_affine)
