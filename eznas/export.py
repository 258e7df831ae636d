"""Export: a program -> one standalone Python file (the torch target), and ``eznas export`` (`export_run`).

The file imports only torch, math and the standard library and defines
``score(net, inputs, targets) -> float`` (higher = better). It embeds the engine's own code
(`eznas.embed`): the probe's `eznas.probe.measure` with only the measures of the statistics the
program reads, and the primitives it uses, from the emitter table `primitives.source_of`. Its
score equals the engine's score for the same net and batch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deap import gp

import primitives
from eznas import config as config_mod
from eznas import gp as programs
from eznas import probe as probe_module
from eznas.embed import embedded_code
from eznas.errors import EznasError
from eznas.files import remove_stale, write_together
from eznas.gp import CONSTANTS
from eznas.probe import ProbeSettings
from eznas.run import source_record

if TYPE_CHECKING:
    from eznas.simplify import Simplified


def program_code(tree: gp.PrimitiveTree) -> tuple[list[str], set[str]]:
    """Straight-line code computing ``tree``: one line per distinct primitive call, under the primitive's
    function name, with the statistics (``t[name]``) and constants read in place.

    Returns the body lines (the last returns the program's value) and the registry names of the primitives
    used (the statistics read are `eznas.gp.statistics_of`).
    """
    lines: list[str] = []
    names: dict[str, str] = {}
    used = set()

    def emit(node: programs.Node, args: list[str], key: str) -> str:
        if isinstance(node, gp.Terminal):
            if node.name in CONSTANTS:
                typ, value = CONSTANTS[node.name]
                size = "n_layers" if typ is primitives.LScalar else "1"
                names[key] = f"torch.full(({size},), {value!r})"
            else:
                names[key] = f"t[{node.name!r}]"
            return names[key]
        used.add(node.name)
        prim = primitives.by_name(node.name)
        if prim.aggregator:
            args = [*args, "layers"]
        names[key] = f"v{len(lines)}"
        lines.append(f"{names[key]} = {prim.func.__name__}({', '.join(args)})")
        return names[key]

    lines.append(f"return {programs.fold(tree, emit, names.get)}")
    return lines, used


def _info_lines(info: dict[str, Any]) -> str:
    """One line per run-information key, its value as compact JSON."""
    return "\n".join(f" {key}: {json.dumps(value, sort_keys=True, default=str)}" for key, value in sorted(info.items()))


def _formula_lines(tree: gp.PrimitiveTree, formula: Simplified | None) -> str:
    """The docstring's statement of the score: the simplified formula (`eznas.simplify.Simplified`) and
    the program as evolved, or the program alone."""
    evolved = programs.infix(tree)
    if formula is None or not formula.simplified:
        return f"    score = {evolved}"
    how = ("by exact identities" if formula.exact else
           "with facts true on every network of the run's pools (on which both give the same scores)")
    note = textwrap.fill(f"Simplified {how} from the program as evolved, which the code below computes:", 100)
    return f"    score = {formula.text}\n\n{note}\n\n    {evolved}"


def _formula_record(formula: Simplified) -> dict[str, Any]:
    """The ``formula`` entry of an exported record: text, LaTeX and how it was checked."""
    return {"text": formula.text, "latex": formula.latex, "check": formula.check}


def export_source(expr: str, settings: ProbeSettings, info: dict[str, Any] | None = None,
                  formula: Simplified | None = None) -> str:
    """The standalone module text for program ``expr`` probed with ``settings``.

    The module embeds only what ``expr`` needs (`eznas.embed.embedded_code`): the probe's
    measures of the statistics it reads and the primitives it calls. ``formula`` (the program's
    `eznas.simplify.Simplified` form) heads the docstring when given.
    """
    tree = programs.parse(expr)
    lines, used = program_code(tree)
    fields = ("features", "weight_rows", "weight_cols", "max_layers", "hessian_probes", "loss")
    settings_args = ", ".join(f"{k}={getattr(settings, k)!r}" for k in fields)
    body = "\n".join(f"    {line}" for line in lines)
    needs = sorted(programs.probe_needs(tree))
    uses_layers = any(primitives.by_name(name).aggregator for name in used)
    make_layers = ('SimpleNamespace(seg=torch.zeros(n_layers, dtype=torch.long), n_nets=1, depth=layers["depth"])'
                   if uses_layers else "None")
    code = embedded_code(needs, used, ["from types import SimpleNamespace"])
    info_text = _info_lines(info or {})
    origin = "evolved by eznas, then pruned (eznas prune)" if "pruned_from" in (info or {}) else "evolved by eznas"
    return f'''"""Zero-cost proxy {origin}.

{_formula_lines(tree, formula)}

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


def export_run(source: str | os.PathLike, rank: int | None, output: str | os.PathLike, formulas: bool = True,
               data_dir: str | None = None, cache_dir: str | None = None) -> tuple[Path, Path, str]:
    """``eznas export``: write hall-of-fame row ``rank`` (default 0) of run directory ``source``, or the program
    of the exported record ``source`` (a re-export: today's probe code and formula), as the proxy file ``output``
    (``.py``) and its record beside it (``.json``, `eznas.run.run_record`).

    ``formulas``: state the program's simplest form verified on the run's pools, as ``eznas inspect``
    shows it (`eznas.report.readable_forms`), in the docstring and as the record's ``formula``.
    Returns the two paths and the formula (else the program's infix form). Refuses (`EznasError`)
    an output that is not a ``.py`` path or whose ``.py`` or ``.json`` would overwrite ``source``.
    """
    path = Path(source)
    record = source_record(path, rank)
    target = checked_output(output, path)
    expr = record["expression"]
    formula = None
    if formulas:
        from eznas.report import readable_forms  # sympy and the pool statistics: only when asked for

        formula = readable_forms(path, [expr], data_dir, cache_dir)[expr]
    written = write_proxy(target, record, formula)
    return target, written, formula.text if formula else programs.infix(programs.parse(expr))


def _info(record: dict[str, Any], cfg: config_mod.Config) -> dict[str, Any]:
    """The run information an exported file's docstring lists, from its record (`eznas.run.run_record`) and the
    record's config ``cfg``."""
    info = {"run": record.get("run"), "rank": record.get("rank"), "pool_fitness": record.get("pool_fitness"),
            "pool_taus": record.get("pool_taus"), "seed": cfg.run.seed, "evolve_tasks": list(cfg.tasks.evolve),
            "probe": dataclasses.asdict(cfg.probe)}
    if "pruned_from" in record:
        info["pruned_from"] = record["pruned_from"]["expression"]
    if cfg.tasks.relative_to:  # pool_fitness is then a margin, not a tau
        info["pool_fitness_relative_to"] = list(cfg.tasks.relative_to)
    return {k: v for k, v in info.items() if v is not None}


def checked_output(output: str | os.PathLike, source: Path) -> Path:
    """The ``.py`` path ``output``, refused (`EznasError`) if it is not one or if it or its ``.json`` record
    would overwrite ``source`` (a run directory's files, or a record)."""
    target = Path(output)
    if target.suffix != ".py":
        raise EznasError(f"-o {output}: give a path ending in .py (the record is written beside it as .json)")
    protected = {p.resolve() for p in source.iterdir()} if source.is_dir() else {source.resolve()}
    for path in (target, target.with_suffix(".json")):
        if path.resolve() in protected:
            what = f"is a file of run {source}" if source.is_dir() else "would overwrite the source record"
            raise EznasError(f"-o {output}: {path} {what}; write the proxy elsewhere")
    return target


def write_proxy(target: Path, record: dict[str, Any], formula: Simplified | None) -> Path:
    """Write the program of ``record`` (`eznas.run.run_record`) as the proxy file ``target`` and the record (with
    the formula, when given) beside it as ``.json``, both or neither (`eznas.files.write_together`); returns the
    record's path."""
    path = target.with_suffix(".json")
    cfg = config_mod.from_dict(record["config"], source="the record")
    doc = {k: v for k, v in record.items() if k != "formula"} | ({"formula": _formula_record(formula)} if formula else {})
    for p in (target, path):
        remove_stale(p.parent, f".{p.name}.*.tmp")  # left by an export that was killed
    write_together([(target, export_source(record["expression"], cfg.probe, _info(record, cfg), formula)),
                    (path, json.dumps(doc, indent=1))], fix="choose another -o path")
    return path
