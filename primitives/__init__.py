"""The typed operation library that eznas programs are built from (pure torch).

A pool of B networks with L layers in total is stored as tensors with a leading layer
dimension (see `types`); every primitive evaluates all layers of all networks in one
batched call and maps finite input to finite output (`_safe`). `registry.PRIMITIVES`
lists the operations, `types.TERMINALS` the inputs, and `source.source_of` emits
standalone code for exported proxies. Nothing here imports `eznas`.
"""

from .layers import Layers
from .registry import PRIMITIVES, Primitive, by_name
from .source import source_of
from .types import TERMINALS, AMat, Gram, LScalar, NScalar, Terminal, WMat

__all__ = [
    "AMat",
    "Gram",
    "LScalar",
    "Layers",
    "NScalar",
    "PRIMITIVES",
    "Primitive",
    "TERMINALS",
    "Terminal",
    "WMat",
    "by_name",
    "source_of",
]
