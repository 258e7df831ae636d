"""Programs: the DEAP typed primitive set built from the `primitives` registry (over every data
terminal, or over those a run allows), a tree generator that never dead-ends on a type, and the
on-disk string form with a safe parser (which reads every terminal).

The prefix string (DEAP's ``PrimitiveTree.__str__``, e.g. ``n_add(l_mean(...), log_params)``)
is the only stored form. `parse` reads it back by matching tokens against the primitive set;
no file text is ever evaluated.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TypeVar

from deap import gp

import primitives
from eznas.errors import EznasError

ROOT_TYPE = primitives.NScalar
MAX_PROGRAM_CHARS = 100_000  # a stored program longer than this is refused
MAX_PROGRAM_DEPTH = 100  # and one nested deeper (evolution.max_depth is at most 17)
T = TypeVar("T")
CONSTANTS = {  # named constant terminals (rank-only fitness needs few)
    "l_one": (primitives.LScalar, 1.0), "l_two": (primitives.LScalar, 2.0), "l_half": (primitives.LScalar, 0.5),
    "n_one": (primitives.NScalar, 1.0), "n_two": (primitives.NScalar, 2.0), "n_half": (primitives.NScalar, 0.5),
}


def primitive_set(statistics: Iterable[str] | None = None) -> gp.PrimitiveSetTyped:
    """The typed primitive set over the data terminals ``statistics`` (None: all of them).

    It holds those terminals, every named constant and the registry primitives whose argument
    types can still be made from them (so no tree dead-ends): without W, dW and H, say, no
    primitive on weight matrices. Equal sets of statistics give the same (cached) object.
    """
    return _primitive_set(frozenset(t.name for t in primitives.TERMINALS) if statistics is None else
                          frozenset(statistics))


@lru_cache(maxsize=16)
def _primitive_set(statistics: frozenset[str]) -> gp.PrimitiveSetTyped:
    terminals = [t for t in primitives.TERMINALS if t.name in statistics]
    made = set(_depths({t.type for t in terminals} | {typ for typ, _ in CONSTANTS.values()},
                       [(p.in_types, p.ret_type) for p in primitives.PRIMITIVES]))  # the types trees can have
    pset = gp.PrimitiveSetTyped("PROXY", [], ROOT_TYPE)
    for p in primitives.PRIMITIVES:
        if set(p.in_types) <= made:
            pset.addPrimitive(p.func, list(p.in_types), p.ret_type, name=p.name)
    for t in terminals:
        pset.addTerminal(t.name, t.type, name=t.name)
    for name, (typ, value) in CONSTANTS.items():
        pset.addTerminal(value, typ, name=name)
    return pset


@lru_cache(maxsize=16)
def _min_depths(pset: gp.PrimitiveSetTyped) -> dict[type, int]:
    """Smallest tree depth (0 = a terminal) that yields each type of ``pset``."""
    return _depths([t for t, terms in pset.terminals.items() if terms],
                   [(p.args, p.ret) for prims in pset.primitives.values() for p in prims])


def _depths(leaves: Iterable[type], signatures: list[tuple[Sequence[type], type]]) -> dict[type, int]:
    """Smallest tree depth (0 = a leaf) of each type that trees can have, with leaves of the types ``leaves``
    and nodes of the ``signatures`` (argument types, return type); types no tree has are absent."""
    depth = dict.fromkeys(leaves, 0)
    changed = True
    while changed:
        changed = False
        for args, ret in signatures:
            if all(a in depth for a in args):
                d = 1 + max(depth[a] for a in args)
                if d < depth.get(ret, 1 << 30):
                    depth[ret] = d
                    changed = True
    return depth


def statistics_of(tree: gp.PrimitiveTree) -> frozenset[str]:
    """The data terminals (probe statistics) ``tree`` reads; named constants are not statistics."""
    return frozenset(n.name for n in tree if isinstance(n, gp.Terminal) and n.name not in CONSTANTS)


def probe_needs(tree: gp.PrimitiveTree) -> frozenset[str]:
    """What a probe must give to score ``tree``: the statistics it reads and the layer depths (the
    network's `primitives.Layers`), as its exported file and `eznas evaluate` probe."""
    return statistics_of(tree) | {"depth"}


def generate(type_: type, min_depth: int, max_depth: int, method: str, rng: random.Random,
             pset: gp.PrimitiveSetTyped | None = None) -> gp.PrimitiveTree:
    """Grow a random tree of ``type_`` from ``pset`` (default: the full `primitive_set`) whose
    depth lies in [min_depth, max_depth] where possible; ``type_`` must be one ``pset`` can make.

    ``method="full"`` prefers primitives until ``min_depth`` and as long as they fit;
    ``"grow"`` picks terminals or primitives freely after ``min_depth``. A type with no
    terminals always gets a primitive that can still close within ``max_depth``; a type with
    no fitting primitive falls back to a terminal. This never raises DEAP's IndexError.
    """
    pset = primitive_set() if pset is None else pset
    need = _min_depths(pset)
    nodes: list = []

    def build(t: type, depth: int) -> None:
        terms = pset.terminals.get(t, [])
        room = max_depth - depth  # depth still available below this node
        prims = [p for p in pset.primitives.get(t, []) if all(need[a] < room for a in p.args)]
        want_prim = depth < min_depth or (method == "full") or rng.random() < 0.5
        if prims and (want_prim or not terms):
            p = rng.choice(prims)
            nodes.append(p)
            for a in p.args:
                build(a, depth + 1)
        elif terms:
            nodes.append(rng.choice(terms))
        else:  # no terminal and nothing fits: take the shallowest primitive (exceeds max_depth slightly)
            p = min(pset.primitives[t], key=lambda q: max(need[a] for a in q.args))
            nodes.append(p)
            for a in p.args:
                build(a, depth + 1)

    build(type_, 0)
    return gp.PrimitiveTree(nodes)


_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*|\(|\)|,)\s*")


def parse(text: str) -> gp.PrimitiveTree:
    """Parse a prefix expression string into a type-checked tree (no evaluation of text).

    Iterative, with limits (`MAX_PROGRAM_CHARS`, `MAX_PROGRAM_DEPTH`), so that no stored text can
    exhaust the stack or the memory; every error is one line naming the problem.
    """
    if len(text) > MAX_PROGRAM_CHARS:
        raise EznasError(f"program of {len(text):,} characters is over the limit of {MAX_PROGRAM_CHARS:,}")
    pset = primitive_set()
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise EznasError(f"cannot parse program {_shown(text)} at character {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    nodes: list = []
    open_: list[list] = []  # primitives whose arguments are being read: [primitive, index of the argument]
    want, i = ROOT_TYPE, 0
    while True:
        if i >= len(tokens):
            raise EznasError(f"program {_shown(text)} ends too early")
        name = tokens[i]
        node = pset.mapping.get(name)
        if node is None:
            raise EznasError(f"unknown primitive or terminal {_shown(name)} in program {_shown(text)}")
        if node.ret is not want:
            raise EznasError(f"type error in program {_shown(text)}: {name} gives {node.ret.__name__}, "
                             f"{want.__name__} expected")
        nodes.append(node)
        i += 1
        if isinstance(node, gp.Primitive):
            if tokens[i: i + 1] != ["("]:
                raise EznasError(f"program {_shown(text)}: {name} needs arguments in parentheses")
            if len(open_) >= MAX_PROGRAM_DEPTH:
                raise EznasError(f"program {_shown(text)} is nested deeper than {MAX_PROGRAM_DEPTH} levels")
            open_.append([node, 0])
            want, i = node.args[0], i + 1
            continue
        while open_:  # a node is complete: go on with its parent's next argument, or close the parent
            prim, k = open_[-1]
            if k + 1 < prim.arity:
                if tokens[i: i + 1] != [","]:
                    raise EznasError(f"program {_shown(text)}: {prim.name} expects {prim.arity} arguments")
                open_[-1][1] = k + 1
                want, i = prim.args[k + 1], i + 1
                break
            if tokens[i: i + 1] != [")"]:
                raise EznasError(f"program {_shown(text)}: {prim.name} expects {prim.arity} arguments")
            open_.pop()
            i += 1
        else:
            break
    if i != len(tokens):
        raise EznasError(f"trailing text in program {_shown(text)}")
    return gp.PrimitiveTree(nodes)


def _shown(text: str, limit: int = 120) -> str:
    """``text`` as an error message shows it: quoted with escapes, cut to about ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div_safe": "/"}
_TYPE_PREFIXES = ("w_", "a_", "gram_", "l_", "n_", "agg_")

Node = gp.Primitive | gp.Terminal


def fold(tree: gp.PrimitiveTree, visit: Callable[[Node, list[T], str], T],
         known: Callable[[str], T | None] | None = None) -> T:
    """The value of ``tree``, computed node by node from the leaves up: the one tree walker.

    ``visit(node, args, key)`` gives a node's value from its arguments' values (in order) and
    its subtree's key, the subtree's prefix string (``str`` of that subtree; equal keys, equal
    subtrees). ``known(key)``, when given, may return the value of a whole subtree, which is then
    used without descending into it (memoisation, shared subexpressions). No recursion: any
    depth of tree is walked.
    """
    keys, children = _structure(tree)
    values: dict[int, T] = {}
    todo: list[tuple[int, bool]] = [(0, False)]
    while todo:
        i, ready = todo.pop()
        if not ready:
            hit = known(keys[i]) if known is not None else None
            if hit is not None:
                values[i] = hit
                continue
            todo.append((i, True))
            todo.extend((c, False) for c in reversed(children[i]))
        else:
            values[i] = visit(tree[i], [values.pop(c) for c in children[i]], keys[i])
    return values[0]


def _structure(tree: gp.PrimitiveTree) -> tuple[list[str], list[list[int]]]:
    """Every node's subtree key and its children's positions (one pass, from the last node back)."""
    keys: list[str] = [""] * len(tree)
    children: list[list[int]] = [[] for _ in tree]
    stack: list[int] = []
    for i in range(len(tree) - 1, -1, -1):
        node = tree[i]
        if isinstance(node, gp.Terminal):
            keys[i] = node.name
        else:
            children[i] = [stack.pop() for _ in range(node.arity)]
            keys[i] = f"{node.name}({', '.join(keys[c] for c in children[i])})"
        stack.append(i)
    return keys, children


def infix(tree: gp.PrimitiveTree) -> str:
    """Readable infix form: type prefixes dropped, +, -, *, / for arithmetic."""
    return fold(tree, _infix_node)


def _infix_node(node: Node, args: list[str], key: str) -> str:
    if isinstance(node, gp.Terminal):
        return repr(CONSTANTS[node.name][1]) if node.name in CONSTANTS else node.name
    base = node.name
    for prefix in _TYPE_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    if base in _INFIX and len(args) == 2:
        return f"({args[0]} {_INFIX[base]} {args[1]})"
    return f"{base}({', '.join(args)})"
