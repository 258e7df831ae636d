"""The code an exported proxy embeds: the probe's `eznas.probe.measure` with only the measures
that produce the statistics it needs, and the primitives it uses.

One source of truth: the code is taken from the source of `eznas.probe` and of the primitives
(`primitives.source_of`) with `ast`, so an exported proxy runs the engine's own code. From the
probe module it keeps `measure` and, transitively, every module-level definition, constant and
import those use (`eznas.probe.MEASURES` is written anew, holding only the measures needed).
Docstrings and annotations are dropped from everything embedded (annotations name types an
exported file does not define), and so are the primitives' `primitives.Layers` dataclass and
registry-name aliases (`_engine_only`); the imports of both parts are merged at the top.
Comments and formatting are not kept (the code is printed by `ast.unparse`).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable

import primitives
from eznas import probe as probe_module

_ROOT = "measure"
_TABLE = "MEASURES"


class _Strip(ast.NodeTransformer):
    """Drop docstrings and, with ``annotations`` false, every annotation."""

    def __init__(self, annotations: bool) -> None:
        self.annotations = annotations

    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        return body or [ast.Pass()]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        node.body = self._body(node.body)
        if not self.annotations:
            node.returns = None
            args = node.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None:
                    arg.annotation = None
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        self.generic_visit(node)
        node.body = self._body(node.body)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt | None:
        if self.annotations:
            return node
        return None if node.value is None else ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def _bound_names(node: ast.stmt) -> list[tuple[str, ast.stmt]]:
    """The module-level names ``node`` binds, each with the statement that binds it alone."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return [(node.name, node)]
    if isinstance(node, ast.Import):
        return [((a.asname or a.name).split(".")[0], ast.Import(names=[a])) for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module != "__future__":
        return [(a.asname or a.name, ast.ImportFrom(module=node.module, names=[a], level=node.level))
                for a in node.names]
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return [(node.targets[0].id, node)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node)]
    return []


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _imports_first(nodes: Iterable[ast.stmt]) -> tuple[list[str], list[str]]:
    """(import lines, other code blocks) of ``nodes`` as source text, in their order; consecutive one-line
    assignments (constants, aliases) make one block."""
    imports, blocks = [], []
    follows_assignment = False
    for node in nodes:
        text = ast.unparse(ast.fix_missing_locations(node))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(text)
            continue
        one_line = isinstance(node, ast.Assign) and "\n" not in text
        if one_line and follows_assignment:
            blocks[-1] += "\n" + text
        else:
            blocks.append(text)
        follows_assignment = one_line
    return imports, blocks


def probe_code(wanted: Iterable[str]) -> tuple[list[str], list[str]]:
    """The probe's code that `eznas.probe.measure` runs for the statistics ``wanted``.

    Returns
    -------
    (imports, blocks): import lines and the definitions (functions, classes, constants) in
    their source order, ending with a ``MEASURES`` table of the measures needed.
    """
    wanted = frozenset(wanted)
    needed = [m.__name__ for m in probe_module.MEASURES if m.provides & wanted]
    strip = _Strip(annotations=False)
    defined: dict[str, tuple[int, ast.stmt]] = {}
    for position, node in enumerate(ast.parse(inspect.getsource(probe_module)).body):
        for name, statement in _bound_names(node):
            defined[name] = (position, statement)
    keep: dict[str, ast.stmt] = {}
    todo = [_ROOT, *needed]
    while todo:
        name = todo.pop()
        if name in keep or name == _TABLE or name not in defined:
            continue
        keep[name] = strip.visit(defined[name][1])
        todo.extend(_loads(keep[name]))
    ordered = sorted(keep, key=lambda name: defined[name][0])
    imports, blocks = _imports_first(keep[name] for name in ordered)
    blocks.append(f"{_TABLE} = ({''.join(name + ', ' for name in needed)})")
    return imports, blocks


def _engine_only(node: ast.stmt) -> bool:
    """Whether ``node`` of `primitives.source_of` is left out of an exported file: the `primitives.Layers`
    dataclass and its import (the file passes the aggregators a plain namespace with the same fields) and
    the registry-name aliases (the file calls each primitive by its function's name, `eznas.export.program_code`)."""
    if isinstance(node, ast.ClassDef):
        return node.name == primitives.Layers.__name__
    if isinstance(node, ast.ImportFrom):
        return node.module == "dataclasses"
    return isinstance(node, ast.Assign) and isinstance(node.value, ast.Name)


def primitive_code(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """`primitives.source_of` ``names`` without docstrings, annotations, `primitives.Layers` and the
    registry-name aliases (`_engine_only`), as (import lines, code blocks)."""
    tree = _Strip(annotations=False).visit(ast.parse(primitives.source_of(sorted(set(names)))))
    return _imports_first(node for node in tree.body if not _engine_only(node))


def _merged(lines: list[str]) -> list[str]:
    """Import lines without repeats, the names imported from one module on one line."""
    plain, names = [], {}
    for line in dict.fromkeys(lines):
        if line.startswith("from "):
            module, _, imported = line[5:].partition(" import ")
            names.setdefault(module, []).append(imported)
        else:
            plain.append(line)
    return plain + [f"from {module} import {', '.join(sorted(found))}" for module, found in names.items()]


def _defined(blocks: list[str]) -> set[str]:
    return {name for block in blocks for node in ast.parse(block).body for name, _ in _bound_names(node)}


def embedded_code(wanted: Iterable[str], primitive_names: Iterable[str], extra_imports: Iterable[str] = ()) -> str:
    """The code an exported proxy embeds: merged imports, then the probe's code for ``wanted``,
    then the primitives named.

    Raises
    ------
    ValueError
        When the probe's code and the primitives' define the same name.
    """
    probe_imports, probe_blocks = probe_code(wanted)
    prim_imports, prim_blocks = primitive_code(primitive_names)
    clashes = _defined(probe_blocks) & _defined(prim_blocks)
    if clashes:
        raise ValueError(f"eznas.probe and the primitives both define {sorted(clashes)}; rename one of them")
    imports = _merged([*extra_imports, *probe_imports, *prim_imports])
    standard = sorted(line for line in imports if not line.split()[1].startswith("torch"))
    torch_lines = sorted(line for line in imports if line.split()[1].startswith("torch"))
    return "\n\n".join(["\n".join(standard) + "\n\n" + "\n".join(torch_lines), *probe_blocks, *prim_blocks])
