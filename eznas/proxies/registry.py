"""The baseline registry: a NASLib-style ``@proxy(name)`` decorator that rejects duplicate names.

Every registered function has the signature ``func(net, inputs, targets)`` and returns either a
float (higher = better) or, for a *set-level* proxy, a dict of named components that the
proxy's ``combine`` turns into one score per network over a whole evaluated set (AZ-NAS ranks
each component over the set). Calling a `Baseline` never touches the caller's network: the
function always receives a private deep copy in *probe mode* (every batch-norm / instance-norm
layer in training mode, on batch statistics, every other module in eval mode, no stored
gradients) and the batch moved to that copy's device.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from eznas.errors import EznasError

Value = float | dict[str, float]
ScoreFunc = Callable[[nn.Module, torch.Tensor, torch.Tensor], Value]
Combine = Callable[[Sequence[Mapping[str, float]]], list[float]]


@dataclass(frozen=True)
class Baseline:
    """A registered hand-designed proxy.

    Attributes
    ----------
    name : registry name, e.g. ``"synflow"``.
    func : ``func(net, inputs, targets) -> float | dict``; receives a private copy of the net.
    combine : None for a per-network proxy; for a set-level proxy, maps the component dicts
        of a set of networks to one score per network (same order).
    version : bumped when the implementation changes, so cached scores are not reused.
    """

    name: str
    func: ScoreFunc
    combine: Combine | None = None
    version: int = 1

    @property
    def doc(self) -> str:
        """The first line of the function's docstring (it cites the paper)."""
        return (self.func.__doc__ or "").strip().splitlines()[0]

    @property
    def set_level(self) -> bool:
        """True when scores only exist relative to a set of networks (``combine`` is set)."""
        return self.combine is not None

    def __call__(self, net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> Value:
        """Score ``net`` on the batch (``inputs [N,3,H,W]``, ``targets [N]``); ``net`` is left untouched."""
        work = probe_mode_copy(net)
        first = next(work.parameters(), None)
        if first is not None:
            inputs, targets = inputs.to(first.device), targets.to(first.device)
        with torch.inference_mode(False), torch.enable_grad():
            value = self.func(work, inputs, targets)
        if self.set_level:
            return {k: float(v) for k, v in value.items()}
        return float(value)

    def score_set(self, values: Sequence[Value]) -> list[float]:
        """One score per network from the values of a whole set (identity for per-network proxies)."""
        if self.combine is None:
            return [float(v) for v in values]
        return self.combine(values)


_REGISTRY: dict[str, Baseline] = {}


def proxy(name: str, combine: Combine | None = None, version: int = 1) -> Callable[[ScoreFunc], ScoreFunc]:
    """Register the decorated function as baseline ``name`` (a duplicate name raises ValueError).

    Stack the decorator to register variants of one function under several names.
    """

    def register(func: ScoreFunc) -> ScoreFunc:
        if name in _REGISTRY:
            raise ValueError(f"proxy {name!r} is already registered (by {_REGISTRY[name].func.__module__}); "
                             f"choose another name")
        _REGISTRY[name] = Baseline(name, func, combine, version)
        return func

    return register


def names() -> list[str]:
    """Registered baseline names, in registration order."""
    return list(_REGISTRY)


def get(name: str) -> Baseline:
    """The baseline registered as ``name``; `EznasError` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EznasError(f"unknown baseline proxy {name!r}; known: {', '.join(_REGISTRY)}") from None


def probe_mode_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` with norm layers in training mode, the rest in eval mode, no grads."""
    work = copy.deepcopy(net)
    work.eval()
    for module in work.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.train()
    for param in work.parameters():
        param.grad = None
    return work

