"""Readable programs: a program's simplest formula (`eznas.formula`), checked against the engine's own
scores on a batch of networks.

Verification (`verified`): the engine scores the program in float32; the formula is evaluated in
float64 from the same statistics, its matrix-valued parts by the primitives in float32 as the
engine does. They agree when ``|formula - engine| <= RTOL * max(|engine|, FLOOR * m)`` on every
network, m the batch's largest |engine score|: round-off on a score that is zero in exact
arithmetic is no disagreement. A pool pass may then use facts true on every network (or layer)
of the batch but not in general: the one branch of ``sign``, ``|x|``, ``min``, ``max``, ``relu``
that every network takes, or ``div_safe`` never meeting a divisor below EPS. Its result is
verified as a whole and flagged ``exact=False`` ("pool-verified").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp
import torch
from deap import gp as dgp

import primitives
from eznas.errors import EznasError
from eznas.fitness import Evaluator
from eznas.formula import (EPS_SYMBOL, SCALARS, DivSafe, Opaque, latex, log_abs_arg, program_tree, size, text,
                           to_sympy)
from eznas.statsbatch import StatsBatch
from primitives._safe import EPS

RTOL = 1e-6  # largest relative difference to the engine's score that counts as the same score
FLOOR = 1e-5  # scores below FLOOR * (largest |score| of the batch) compare at that size instead
MAX_EXPANDED = 64  # largest expansion (in terms) that simplification tries


@dataclass(frozen=True)
class Simplified:
    """A program as a formula.

    Attributes
    ----------
    program : str
        The prefix program it stands for.
    sympy : sympy.Expr
        The formula: statistics as symbols by name, ``eps`` the offset inside log_abs.
    text, latex : str
        Readable one-line form; LaTeX form (sympy's LaTeX printer).
    size : int
        Node count, comparable with a program's (module docstring).
    exact : bool
        False when facts checked on a batch were used ("pool-verified").
    simplified : bool
        False when `verified` fell back to the program's own structure, no simpler form
        scoring as the engine does.
    """

    program: str
    sympy: sp.Expr
    text: str
    latex: str
    size: int
    exact: bool = True
    simplified: bool = True

    @property
    def check(self) -> str:
        """How the formula was checked: ``"exact"``, ``"pool-verified"`` or ``"as evolved"`` (not simplified)."""
        return "as evolved" if not self.simplified else "exact" if self.exact else "pool-verified"




def _expanded_terms(expr: sp.Expr) -> int:
    """How many terms fully expanding ``expr`` would give at most (products of sums multiply)."""
    if expr.is_Add:
        return sum(_expanded_terms(a) for a in expr.args)
    if expr.is_Mul:
        return functools.reduce(lambda n, a: n * _expanded_terms(a), expr.args, 1)
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return _expanded_terms(expr.base) ** int(expr.exp)
    return 1


def _simplest(expr: sp.Expr) -> sp.Expr:
    """The smallest of the exact rewrites ``factor_terms``, ``expand`` (up to MAX_EXPANDED terms,
    so that cancellations across products show) and both, of every sum and product, bottom-up."""
    def local(e: sp.Expr) -> sp.Expr:
        if not (e.is_Add or e.is_Mul):
            return e
        candidates = [e, sp.factor_terms(e)]
        if _expanded_terms(e) <= MAX_EXPANDED:
            expanded = sp.expand(e)
            candidates += [expanded, sp.factor_terms(expanded)]
        return min(candidates, key=size)
    return sp.bottom_up(expr, local)


_NUMERIC = {
    sp.Add: lambda *a: functools.reduce(torch.add, a), sp.Mul: lambda *a: functools.reduce(torch.mul, a),
    sp.Pow: torch.pow, sp.Abs: torch.abs, sp.log: torch.log, sp.sign: torch.sign,
    sp.Max: lambda *a: functools.reduce(torch.maximum, a), sp.Min: lambda *a: functools.reduce(torch.minimum, a),
}


class _Values:
    """Values of formulas on one batch, memoised: scalar parts in float64 from the float32
    statistics, matrix-valued parts by the primitives in float32 exactly as the engine does."""

    def __init__(self, batch: StatsBatch):
        self.batch, self.layers = batch, batch.context()
        self._memo: dict[sp.Expr, torch.Tensor] = {}

    def __call__(self, expr: sp.Expr) -> torch.Tensor:
        value = self._memo.get(expr)
        if value is None:
            with torch.no_grad():
                value = self._memo[expr] = self._compute(expr)
        return value

    def per_network(self, expr: sp.Expr) -> torch.Tensor:
        """float64 [B]: the formula's score of every network."""
        return self(expr).double().expand(self.batch.n_nets)

    def _compute(self, expr: sp.Expr) -> torch.Tensor:
        if expr == EPS_SYMBOL or expr.is_Number:
            return torch.tensor(EPS if expr == EPS_SYMBOL else float(expr), dtype=torch.float64)
        if expr.is_Symbol:
            value = self.batch.layers.get(expr.name, self.batch.net.get(expr.name))
            return value if value.dim() > 1 else value.double()
        args = [self(a) for a in expr.args]
        if isinstance(expr, Opaque):
            prim = primitives.by_name(expr.primitive)
            if not prim.aggregator:
                value = prim.func(*args)
            else:
                value = prim.func(*[a.expand(len(self.batch.seg)) if a.dim() == 0 else a for a in args], self.layers)
            return value.double() if prim.ret_type in SCALARS else value
        numeric = _NUMERIC.get(type(expr))
        if numeric is None:
            raise EznasError(f"no numeric form of {type(expr).__name__} in formula {expr}: add it to simplify._NUMERIC")
        return numeric(*args)


def _agrees(formula: torch.Tensor, engine: torch.Tensor) -> bool:
    """Whether the formula's scores equal the engine's on every network (module docstring)."""
    scale = float(engine.abs().max()) if len(engine) else 0.0
    bound = RTOL * torch.clamp(engine.abs(), min=FLOOR * scale)
    return bool(torch.all((formula - engine).abs() <= bound))


def _branch(expr: sp.Expr, values: _Values) -> sp.Expr:
    """``expr`` with its piecewise primitive resolved to the one branch every network takes."""
    args = expr.args
    if isinstance(expr, sp.sign):
        value = values(expr).unique()
        return sp.Integer(int(value[0])) if len(value) == 1 else expr
    if isinstance(expr, sp.Abs):
        x = values(args[0])
        return args[0] if bool((x >= 0).all()) else -args[0] if bool((x <= 0).all()) else expr
    if isinstance(expr, (sp.Max, sp.Min)):
        wins = torch.ge if isinstance(expr, sp.Max) else torch.le
        for a in args:
            if all(bool(wins(values(a), values(b)).all()) for b in args if b != a):
                return a
    if isinstance(expr, DivSafe) and bool((values(args[1]).abs() >= EPS).all()):
        return args[0] / args[1]
    return expr


def _pool_facts(expr: sp.Expr, values: _Values) -> sp.Expr:
    """Resolve piecewise primitives bottom-up by the branch that the whole batch takes."""
    if expr.is_Atom or (isinstance(expr, Opaque) and primitives.by_name(expr.primitive).ret_type not in SCALARS):
        return expr
    inner = log_abs_arg(expr)
    if isinstance(inner, sp.Abs):  # keep log_abs whole: log(|x| + eps) is one primitive
        return sp.log(sp.Abs(_pool_facts(inner.args[0], values)) + EPS_SYMBOL)
    return _branch(expr.func(*[_pool_facts(a, values) for a in expr.args]), values)


def _exact_form(tree: dgp.PrimitiveTree) -> sp.Expr:
    """The smallest exact form: the simplified translation, or the literal one where smaller
    (sympy's own rewriting can grow a formula, e.g. ``|a*b|`` into ``|a|*|b|``)."""
    return min((_simplest(to_sympy(tree)), to_sympy(tree, evaluate=False)), key=size)


def _render(tree: dgp.PrimitiveTree, expr: sp.Expr, exact: bool = True, simplified: bool = True) -> Simplified:
    return Simplified(program=str(tree), sympy=expr, text=text(expr),
                      latex=latex(expr), size=size(expr), exact=exact, simplified=simplified)


def simplify(program: str | dgp.PrimitiveTree) -> Simplified:
    """Simplify a program by exact identities only (no batch needed).

    Parameters
    ----------
    program : str or deap.gp.PrimitiveTree
        A program of root type NScalar, as its prefix string or its tree.

    Returns
    -------
    Simplified
        The smallest form found by `size` (``exact=True``).

    Raises
    ------
    EznasError
        For a malformed program or an unknown primitive or terminal.
    """
    tree = program_tree(program)
    return _render(tree, _exact_form(tree))


def verified(program: str | dgp.PrimitiveTree, batch: StatsBatch, pool_facts: bool = True) -> Simplified:
    """The smallest form of a program that scores as the engine does on every network of ``batch``.

    Candidates: the exact form of `simplify` and, with ``pool_facts``, that form with every
    piecewise primitive resolved to the branch all networks of ``batch`` take, simplified again.
    Each must agree with the engine's scores (`RTOL`, `FLOOR`); the smaller wins, the exact one
    on a tie.

    Returns
    -------
    Simplified
        ``exact`` says whether pool facts were used; when no candidate agrees, the program's own
        structure with ``simplified=False``.

    Raises
    ------
    EznasError
        For a malformed program or an unknown primitive or terminal.
    """
    tree = program_tree(program)
    engine = Evaluator(batch).scores(tree).double()
    values = _Values(batch)
    exact = _exact_form(tree)
    forms = [(exact, True)]
    pooled = _pool_facts(exact, values) if pool_facts else exact
    if pooled != exact:
        forms.append((_simplest(pooled), False))
    agreeing = [(form, is_exact) for form, is_exact in forms if _agrees(values.per_network(form), engine)]
    if not agreeing:
        return _render(tree, to_sympy(tree, evaluate=False), simplified=False)
    form, is_exact = min(agreeing, key=lambda candidate: size(candidate[0]))
    return _render(tree, form, exact=is_exact)
