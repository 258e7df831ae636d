"""PROXY arguments: what ``eznas evaluate``, ``eznas search`` and the table scripts are asked to score.

A PROXY is one of

- a baseline name (`eznas.proxies.names`), scored on each network (set-level baselines such
  as ``az_nas`` are combined over the evaluated set);
- a path ending in ``.py`` to a file defining ``score(net, inputs, targets) -> float`` (an
  exported proxy, or any hand-written one), imported and run as code: give trusted files only;
- the ``.json`` record that ``eznas export`` writes beside a proxy: its expression, scored as
  an expression string (the same scores and cache), labelled with the file name;
- a GP expression string (`eznas.gp.parse`), scored by the engine on cached statistics.

`resolve` tells them apart by their text alone (a name, a ``.py`` or ``.json`` suffix, else an
expression), never by guessing from the file system, and gives each its cache identity.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from eznas import proxies
from eznas.errors import EznasError
from eznas.probe import PROBE_VERSION, ProbeSettings
from eznas.run import read_record


@dataclass(frozen=True)
class ProxySpec:
    """A resolved PROXY argument.

    Attributes
    ----------
    text : the argument as given.
    kind : ``"baseline"``, ``"file"`` or ``"expression"``.
    label : display name (baseline name, file name, infix expression).
    ref : what a worker resolves: the baseline name, the absolute file path, the prefix expression.
    identity : JSON-able cache identity (name and version, file sha256, or expression with its probe
        settings and the probe version).
    """

    text: str
    kind: str
    label: str
    ref: str
    identity: dict[str, Any]


def resolve(text: str, probe_cfg: ProbeSettings | None = None) -> ProxySpec:
    """Resolve a PROXY argument; `EznasError` with one line if it is none of the four kinds.

    ``probe_cfg`` (default: `ProbeSettings` defaults) enters the identity of an expression.
    """
    text = text.strip()
    if text in proxies.names():
        return ProxySpec(text, "baseline", text, text, {"baseline": text, "version": proxies.get(text).version})
    from eznas import gp as programs  # DEAP, only for expressions

    path = Path(text)
    if text.endswith(".json"):
        tree = programs.parse(read_record(path, "proxy record")["expression"])
        return _expression_spec(text, tree, path.name, probe_cfg)
    if text.endswith(".py"):
        if not path.is_file():
            raise EznasError(f"proxy file {text} not found; "
                             f"give an existing .py file defining score(net, inputs, targets)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        load_score_file(str(path.resolve()), digest)  # fail here, once, not in every worker
        return ProxySpec(text, "file", path.name, str(path.resolve()), {"file_sha256": digest})
    if "(" not in text and text not in programs.primitive_set().mapping:
        raise EznasError(f"unknown proxy {text!r}: not a baseline ({', '.join(proxies.names())}), "
                         f"not a .py file and not a GP expression")
    try:
        tree = programs.parse(text)
    except EznasError as e:
        raise EznasError(f"proxy {text!r} is neither a baseline nor a file, and not a valid expression: {e}") from None
    return _expression_spec(text, tree, programs.infix(tree), probe_cfg)


def _expression_spec(text: str, tree: Any, label: str, probe_cfg: ProbeSettings | None) -> ProxySpec:
    cfg = probe_cfg or ProbeSettings()
    return ProxySpec(text, "expression", label, str(tree),
                     {"expression": str(tree), "probe": dataclasses.asdict(cfg), "probe_version": PROBE_VERSION})


@functools.lru_cache(maxsize=32)
def load_score_file(path: str, digest: str) -> Callable[..., Any]:
    """The ``score`` function of the proxy file at ``path`` (``digest`` keys the per-process cache)."""
    name = f"eznas_proxy_{digest[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise EznasError(f"{path}: not loadable as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered, as for an import (dataclasses and pickling look it up)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # any failure of user code at import time is the user's to fix
        del sys.modules[name]
        message = " ".join(str(e).split())
        raise EznasError(f"{path}: importing the proxy file failed ({type(e).__name__}: {message}); "
                         f"fix the file") from None
    score = getattr(module, "score", None)
    if not callable(score):
        raise EznasError(f"{path}: defines no function score(net, inputs, targets); "
                         f"write one, or export a proxy with 'eznas export RUN -o FILE'")
    return score


def scorer(spec: ProxySpec) -> Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], Any]:
    """The per-network callable of a baseline or file proxy (file proxies get a copy of the net)."""
    if spec.kind == "baseline":
        return proxies.get(spec.ref)
    func = load_score_file(spec.ref, spec.identity["file_sha256"])
    return lambda net, x, y: func(copy.deepcopy(net), x, y)
