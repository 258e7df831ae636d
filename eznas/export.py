"""Export: a program -> one standalone Python file (the torch target).

The file imports only torch, math and the standard library and defines
``score(net, inputs, targets) -> float`` (higher = better). It embeds the engine's own code
(`eznas.embed`): the probe's `eznas.probe.measure` with only the measures of the statistics the
program reads, and the primitives it uses, from the emitter table `primitives.source_of`. Its
score equals the engine's score for the same net and batch.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from deap import gp

import primitives
from eznas import gp as programs
from eznas import probe as probe_module
from eznas.embed import embedded_code
from eznas.errors import EznasError
from eznas.gp import CONSTANTS
from eznas.probe import ProbeSettings


def program_code(tree: gp.PrimitiveTree) -> tuple[list[str], set[str], set[str]]:
    """Straight-line code computing ``tree`` (one line per distinct subtree).

    Returns the body lines (the last assigns ``result``), the primitive names used and the
    statistics (terminals) read.
    """
    lines: list[str] = []
    names: dict[str, str] = {}
    used, stats = set(), set()

    def emit(i: int) -> tuple[str, int]:
        end = tree.searchSubtree(i).stop
        key = str(gp.PrimitiveTree(tree[i:end]))
        node = tree[i]
        if key in names:
            return names[key], end
        if isinstance(node, gp.Terminal):
            if node.name in CONSTANTS:
                typ, value = CONSTANTS[node.name]
                size = "n_layers" if typ is primitives.LScalar else "1"
                expr = f"torch.full(({size},), {value!r})"
            else:
                stats.add(node.name)
                expr = f"t[{node.name!r}]"
        else:
            args, j = [], i + 1
            for _ in range(node.arity):
                a, j = emit(j)
                args.append(a)
            used.add(node.name)
            if primitives.by_name(node.name).aggregator:
                args.append("layers")
            expr = f"{node.name}({', '.join(args)})"
        var = f"v{len(names)}"
        names[key] = var
        lines.append(f"{var} = {expr}")
        return var, end

    last, _ = emit(0)
    lines.append(f"result = {last}")
    return lines, used, stats


def _info_lines(info: dict[str, Any]) -> str:
    """One line per run-information key, its value as compact JSON."""
    return "\n".join(f" {key}: {json.dumps(value, sort_keys=True, default=str)}" for key, value in sorted(info.items()))


def export_source(expr: str, settings: ProbeSettings, info: dict[str, Any] | None = None) -> str:
    """The standalone module text for program ``expr`` probed with ``settings``.

    The module embeds only what ``expr`` needs (`eznas.embed.embedded_code`): the probe's
    measures of the statistics it reads and the primitives it calls.
    """
    tree = programs.parse(expr)
    lines, used, stats = program_code(tree)
    readable = programs.infix(tree)
    fields = ("features", "weight_rows", "weight_cols", "max_layers", "hessian_probes", "loss")
    settings_args = ", ".join(f"{k}={getattr(settings, k)!r}" for k in fields)
    body = "\n".join(f"    {line}" for line in lines)
    needs = sorted(stats | {"depth"})
    uses_layers = any(primitives.by_name(name).aggregator for name in used)
    make_layers = ('Layers(seg=torch.zeros(n_layers, dtype=torch.long), n_nets=1, depth=layers["depth"])'
                   if uses_layers else "None")
    code = embedded_code(needs, used, ["from types import SimpleNamespace"])
    info_text = _info_lines(info or {})
    return f'''"""Zero-cost proxy evolved by eznas.

    score = {readable}

Usage::

    from this_file import score
    s = score(net, inputs, targets)   # higher = better; the net is left untouched

Works on any torch network of Conv2d/Linear layers (and nn.MultiheadAttention) whose forward
returns the logits (or a tuple ending with them, or a dict with 'logits'). Imports only torch,
math and the standard library. The code below is eznas's probe (version {probe_module.PROBE_VERSION}),
restricted to the statistics this expression reads, and the primitives it calls.

Run information:
{info_text}
"""

{code}


EXPRESSION = {expr!r}
SETTINGS = SimpleNamespace({settings_args})
NEEDS = frozenset({needs!r})


def _program(t, layers, n_layers):
    """Evaluate the evolved expression on one network's statistics ``t``."""
{body}
    return result


def score(net, inputs, targets) -> float:
    """The proxy's score of ``net`` on the batch ``(inputs, targets)``; higher = better."""
    layers, scalars = measure(net, inputs, targets, SETTINGS, NEEDS)
    t = dict(layers)
    t.update({{k: torch.tensor([float(v)], dtype=torch.float32) for k, v in scalars.items()}})
    n_layers = layers["depth"].shape[0]
    layers = {make_layers}
    with torch.no_grad():
        return float(_program(t, layers, n_layers)[0])
'''


def run_record(checkpoint: dict[str, Any], rank: int, run: str) -> dict[str, Any]:
    """What goes beside an exported proxy (``NAME.json``): the program, how it scored, the
    fitness history, the run's config and seed, its wall time and the machine it ran on."""
    row = checkpoint["hall_of_fame"][rank]
    return {
        "run": run, "rank": rank, "expression": row["expr"], "infix": row["infix"], "size": row["size"],
        "pool_fitness": row["fitness"], "pool_taus": row["taus"], "found_at_generation": row["generation"],
        "generations": checkpoint["next_generation"], "evolution_seconds": checkpoint["elapsed"],
        "seed": checkpoint["config"]["run"]["seed"], "config": checkpoint["config"],
        "fitness_history": [{k: h[k] for k in ("gen", "best", "median", "hof_fitness", "seconds")}
                            for h in checkpoint["history"]],
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "torch": torch.__version__},
    }


def record_expression(path: str | os.PathLike, where: str) -> str:
    """The expression of the record that `run_record` wrote (``NAME.json`` beside a proxy);
    ``where`` starts the one-line `EznasError` for a missing, unreadable or foreign file."""
    return read_record(path, where)["expression"]


def read_record(path: str | os.PathLike, where: str) -> dict[str, Any]:
    """The record that `run_record` wrote, checked to hold an expression (errors as `record_expression`)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise EznasError(f"{where}: {path} not found; give the .json that 'eznas export' writes beside a proxy") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise EznasError(f"{where}: {path} is not readable JSON; give the .json that 'eznas export' writes") from None
    if not isinstance(record, dict) or not isinstance(record.get("expression"), str):
        raise EznasError(f"{where}: {path} has no 'expression'; give the .json that 'eznas export' writes")
    return record
