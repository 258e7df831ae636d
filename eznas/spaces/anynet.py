"""NDS AnyNet search spaces (ResNet, ResNeXt-A, ResNeXt-B, Vanilla) as pycls-style modules.

An AnyNet is a stem, stages of repeated blocks and a head. In an NDS ``net`` dict, element 0
of ``ds`` (depths), ``ws`` (widths) and ``ss`` (strides) describes the stem and elements 1 and
up the stages; ``bot_muls`` (bottleneck multipliers) and ``num_gs`` (the number of groups of
the 3x3 conv, not the group width) are indexed the same way. The stem follows from its stride:
1 is the CIFAR 3x3 stem, 4 the ResNet 7x7 conv + max-pool stem, 8 a stem of three 3x3
stride-2 convs (widths ``w/2, w, w``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from eznas.errors import EznasError


def conv_bn(w_in: int, w_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A bias-free convolution ("same" padding) followed by BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(w_in, w_out, kernel, stride=stride, padding=kernel // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(w_out),
    )


class StemCifar(nn.Sequential):
    """CIFAR stem: 3x3 stride-1 conv, BN, ReLU."""

    def __init__(self, w_out: int) -> None:
        super().__init__(conv_bn(3, w_out, 3), nn.ReLU(inplace=True))


class StemResIN(nn.Sequential):
    """ResNet ImageNet stem: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool (stride 4)."""

    def __init__(self, w_out: int) -> None:
        super().__init__(
            conv_bn(3, w_out, 7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )


class StemDeepIN(nn.Sequential):
    """Three 3x3 stride-2 conv-BN-ReLU layers, widths ``w/2, w, w`` (stride 8)."""

    def __init__(self, w_out: int) -> None:
        super().__init__(
            conv_bn(3, w_out // 2, 3, stride=2), nn.ReLU(inplace=True),
            conv_bn(w_out // 2, w_out, 3, stride=2), nn.ReLU(inplace=True),
            conv_bn(w_out, w_out, 3, stride=2), nn.ReLU(inplace=True),
        )


# Stem stride (``ss[0]``) -> stem constructor ``(width) -> module``.
STEMS: dict[int, Callable[[int], nn.Module]] = {1: StemCifar, 4: StemResIN, 8: StemDeepIN}


class DoublePlainBlock(nn.Sequential):
    """Vanilla block: two 3x3 conv-BN-ReLU layers, no shortcut."""

    def __init__(self, w_in: int, w_out: int, stride: int, bot_mul: float, groups: int) -> None:
        super().__init__(
            conv_bn(w_in, w_out, 3, stride), nn.ReLU(inplace=True),
            conv_bn(w_out, w_out, 3), nn.ReLU(inplace=True),
        )


class ResBlock(nn.Module):
    """Residual block: ``relu(shortcut(x) + f(x))`` with a 1x1 conv-BN projection if needed."""

    def __init__(self, f: nn.Module, w_in: int, w_out: int, stride: int) -> None:
        super().__init__()
        self.proj = conv_bn(w_in, w_out, 1, stride) if w_in != w_out or stride != 1 else None
        self.f = f
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the transform to the (projected) input and apply ReLU."""
        shortcut = x if self.proj is None else self.proj(x)
        return self.relu(shortcut + self.f(x))


class ResBasicBlock(ResBlock):
    """Residual basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus shortcut."""

    def __init__(self, w_in: int, w_out: int, stride: int, bot_mul: float, groups: int) -> None:
        f = nn.Sequential(conv_bn(w_in, w_out, 3, stride), nn.ReLU(inplace=True),
                          conv_bn(w_out, w_out, 3))
        super().__init__(f, w_in, w_out, stride)


class ResBottleneckBlock(ResBlock):
    """Residual bottleneck: 1x1 to ``w_b``, grouped 3x3 (strided), 1x1 to ``w_out``, shortcut."""

    def __init__(self, w_in: int, w_out: int, stride: int, bot_mul: float, groups: int) -> None:
        w_b = int(round(w_out * bot_mul))
        f = nn.Sequential(
            conv_bn(w_in, w_b, 1), nn.ReLU(inplace=True),
            conv_bn(w_b, w_b, 3, stride, groups=groups), nn.ReLU(inplace=True),
            conv_bn(w_b, w_out, 1),
        )
        super().__init__(f, w_in, w_out, stride)


# ``block_type`` -> block constructor ``(w_in, w_out, stride, bot_mul, groups)``; blocks
# without a bottleneck accept and ignore the last two.
BLOCKS: dict[str, Callable[[int, int, int, float, int], nn.Module]] = {
    "double_plain_block": DoublePlainBlock,
    "res_basic_block": ResBasicBlock,
    "res_bottleneck_block": ResBottleneckBlock,
}


class AnyNet(nn.Module):
    """Stem, stages of blocks (the first block of a stage strides), average pool, linear head."""

    def __init__(self, block_type: str, ds: list[int], ws: list[int], ss: list[int],
                 bot_muls: list[float], num_gs: list[int], num_classes: int) -> None:
        super().__init__()
        self.stem = STEMS[ss[0]](ws[0])
        block = BLOCKS[block_type]
        stages = []
        w_in = ws[0]
        for i in range(1, len(ds)):
            blocks = [block(w_in if j == 0 else ws[i], ws[i], ss[i] if j == 0 else 1,
                            bot_muls[i], num_gs[i]) for j in range(ds[i])]
            stages.append(nn.Sequential(*blocks))
            w_in = ws[i]
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``[N, num_classes]``."""
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def _int_list(net: dict, key: str, where: str, minimum: int) -> list[int]:
    """``net[key]`` as a list of ints >= ``minimum``, else `EznasError`."""
    value = net.get(key)
    if (not isinstance(value, list) or not value
            or any(type(v) is not int or v < minimum for v in value)):
        raise EznasError(f"{where}: {key!r} must be a non-empty list of integers >= {minimum}, "
                         f"got {value!r}")
    return value


def build_anynet(net: dict, num_classes: int, where: str = "NDS net") -> AnyNet:
    """Build an AnyNet from an NDS ``net`` dict.

    Parameters
    ----------
    net : dict with ``block_type``, ``ds``, ``ws``, ``ss``, ``bot_muls``, ``num_gs`` (the last
        two may be empty unless ``block_type`` is ``res_bottleneck_block``).
    num_classes : classifier width.
    where : names the entry in error messages (e.g. ``"ResNet_lr-wd_in.json entry 3"``).

    Returns
    -------
    AnyNet
        The network; ``forward`` returns logits.
    """
    block_type = net.get("block_type")
    if block_type not in BLOCKS:
        raise EznasError(f"{where}: unknown block_type {block_type!r}; "
                         f"known: {', '.join(sorted(BLOCKS))}")
    ds = _int_list(net, "ds", where, 1)
    ws = _int_list(net, "ws", where, 1)
    ss = _int_list(net, "ss", where, 1)
    n = len(ds)
    if len(ws) != n or len(ss) != n or n < 2:
        raise EznasError(f"{where}: 'ds', 'ws' and 'ss' must have one stem entry plus at least "
                         f"one stage each, got lengths {len(ds)}, {len(ws)}, {len(ss)}")
    if ss[0] not in STEMS:
        raise EznasError(f"{where}: unsupported stem stride ss[0]={ss[0]}; "
                         f"supported: {', '.join(map(str, sorted(STEMS)))}")
    if block_type == "res_bottleneck_block":
        num_gs = _int_list(net, "num_gs", where, 1)
        bot_muls = net.get("bot_muls")
        if (not isinstance(bot_muls, list) or len(bot_muls) != n or len(num_gs) != n
                or any(not isinstance(b, (int, float)) or b <= 0 for b in bot_muls)):
            raise EznasError(f"{where}: 'bot_muls' (positive numbers) and 'num_gs' must have "
                             f"{n} entries like 'ds', got {bot_muls!r} and {num_gs!r}")
        for i in range(1, n):
            w_b = int(round(ws[i] * bot_muls[i]))
            if w_b < 1 or w_b % num_gs[i]:
                raise EznasError(f"{where}: stage {i} bottleneck width {w_b} "
                                 f"(ws={ws[i]} x bot_mul={bot_muls[i]}) is not divisible by "
                                 f"num_gs={num_gs[i]} groups")
    else:
        bot_muls, num_gs = [1.0] * n, [1] * n
    return AnyNet(block_type, ds, ws, ss, bot_muls, num_gs, num_classes)
