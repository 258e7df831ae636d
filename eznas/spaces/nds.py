"""NDS networks (Radosavovic et al. 2019): build the network of one sweep entry's ``net`` dict.

Cell spaces (DARTS, ENAS, Amoeba, NASNet, PNAS; ``net`` holds a ``genotype``) live in
`eznas.spaces.nds_cells`, AnyNet spaces (ResNet, ResNeXt-A/B, Vanilla; ``net`` holds a
``block_type``) in `eznas.spaces.anynet`. Parameter counts equal the ``params`` the NDS authors
stored for every entry of the ImageNet sweeps. Weights get the pycls initialisation
(skipped on the ``meta`` device, whose tensors hold no values).
"""

from __future__ import annotations

import math

from torch import nn

from eznas.errors import EznasError
from eznas.spaces.anynet import build_anynet
from eznas.spaces.nds_cells import build_cell_network


def init_weights(m: nn.Module) -> None:
    """pycls initialisation: He (fan-out) normal convs, unit BN, small-normal linear layers."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
        nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, mean=0.0, std=0.01)
        nn.init.zeros_(m.bias)


def build(net: dict, imagenet: bool, num_classes: int, where: str = "NDS net") -> nn.Module:
    """Build the network described by an NDS entry's ``net`` dict.

    Parameters
    ----------
    net : the entry's ``net`` dict: a cell genotype (``genotype``, ``width``, ``depth``, ...)
        or an AnyNet (``block_type``, ``ds``, ``ws``, ``ss``, ``bot_muls``, ``num_gs``).
    imagenet : cell spaces only: the ImageNet layout (stride-8 stem) if true, else the CIFAR
        layout. AnyNet stems follow from ``ss[0]``.
    num_classes : classifier width (1000 for ``*_in`` sweeps, 10 for CIFAR-10 sweeps).
    where : names the entry in error messages, e.g. ``"DARTS_in.json entry 3"``.

    Returns
    -------
    torch.nn.Module
        The network, pycls-initialised; ``forward(x)`` returns logits ``[N, num_classes]``.

    Raises
    ------
    EznasError
        If ``net`` is malformed or names an unknown op or block type.
    """
    if not isinstance(net, dict):
        raise EznasError(f"{where}: expected an NDS 'net' dict, got {type(net).__name__}")
    if type(num_classes) is not int or num_classes < 1:
        raise EznasError(f"{where}: num_classes must be a positive integer, got {num_classes!r}")
    if "genotype" in net:
        model: nn.Module = build_cell_network(net, imagenet, num_classes, where)
    elif "block_type" in net:
        model = build_anynet(net, num_classes, where)
    else:
        raise EznasError(f"{where}: an NDS 'net' dict needs 'genotype' (cell spaces) or "
                         f"'block_type' (AnyNet spaces); got keys {sorted(net)}")
    if not any(p.is_meta for p in model.parameters()):
        model.apply(init_weights)  # meta tensors hold no values to initialise
    return model
