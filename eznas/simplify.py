"""Readable programs: a program -> a sympy formula -> its simplest form (text, LaTeX, size),
checked against the engine's own scores on a batch of networks.

Translation. Statistics are real symbols under their terminal names, named constants exact
rationals. Scalar primitives (LScalar, NScalar) with an exact sympy form map to it: add, sub, mul,
neg, square, abs, min, max, sign; ``relu(x)`` is ``Max(x, 0)``, ``sqrt_abs(x)`` ``sqrt(|x|)``,
``log_abs(x)`` ``log(|x| + eps)`` (the symbol ``eps`` is `primitives._safe.EPS`). The rest are
opaque functions named by their registry names: ``exp_clamped`` and ``sigmoid`` (the clamp and
float32 underflow leave no identity but non-negativity), ``div_safe`` (plain division only by a
number of magnitude >= EPS, where the protection cannot trigger), layer aggregators and
``l_delta`` (functions of the simplified layer-level formula; of a constant, mean, max, min and
depth mean give it, std and delta 0), and every matrix-valued primitive and reduction.
Arithmetic is exact within the primitives' +-1e30 clamp.

Size: the node count of the program that computes the formula. A symbol or a number (also a
constant such as ``sqrt(2)/2``) is 1; a function, ``|x|`` or ``sign`` 1 plus its arguments; an
n-ary sum, product, min or max n - 1 plus its arguments (a negative term is a subtraction, a
negative power a division, a coefficient -1 a negation); ``x**2``, ``sqrt(|x|)``,
``log(|x| + eps)`` and ``Max(x, 0)`` (relu) 1 plus ``x``; other powers 2 plus the base. The
unsimplified translation of a program has its node count, or less where ``-a + b`` is ``b - a``.

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
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

import primitives
from eznas import gp
from eznas.errors import EznasError
from eznas.fitness import Evaluator
from eznas.statsbatch import StatsBatch
from primitives._safe import EPS

RTOL = 1e-6  # largest relative difference to the engine's score that counts as the same score
FLOOR = 1e-5  # scores below FLOOR * (largest |score| of the batch) compare at that size instead
MAX_EXPANDED = 64  # largest expansion (in terms) that simplification tries
EPS_SYMBOL = sp.Symbol("eps", positive=True)  # primitives._safe.EPS inside log_abs
_MATRICES = (primitives.WMat, primitives.AMat, primitives.Gram)
_SCALARS = (primitives.LScalar, primitives.NScalar)
_NONNEGATIVE = {"exp_clamped", "sigmoid", "std", "mean_abs", "frob", "max_abs", "eig_ratio", "eig_entropy"}
_INFIX = {"add": "+", "sub": "-", "mul": "*"}  # matrix-level arithmetic printed between its operands
_CONSTANT_AGGREGATE = {"agg_mean": 1, "agg_max": 1, "agg_min": 1, "agg_depth_mean": 1, "agg_std": 0, "l_delta": 0}


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


class _Opaque(sp.Function):
    """A primitive with no exact sympy counterpart; ``primitive`` is its registry name."""

    primitive = ""
    is_real = True
    is_number = False  # no numeric value even of constant arguments (as sympy's undefined functions)


class _Aggregate(_Opaque):
    """A layer-level primitive that needs the pool layout; constant input evaluates."""

    @classmethod
    def eval(cls, x):
        factor = _CONSTANT_AGGREGATE.get(cls.primitive)
        if factor is not None and x.is_Number:
            return x * factor
        return None


class _DivSafe(_Opaque):
    """Scalar ``div_safe``: plain division only where the protection provably cannot trigger
    (a numeric divisor of magnitude >= EPS), or where both branches give 0 (``0 / y``)."""

    @classmethod
    def eval(cls, x, y):
        if x.is_zero or (y.is_Number and abs(y) >= EPS):
            return x / y
        return None


def _label(name: str) -> str:
    """Display name: type prefix dropped (``n_log_abs`` -> ``log_abs``), ``agg_max`` -> ``max_layers``;
    the kernels AMat -> Gram keep theirs (``gram_sign(A)`` is not ``a_sign(A)``)."""
    if name.startswith("agg_"):
        return name[4:] + "_layers"
    prefix = next((p for p in ("w_", "a_", "gram_", "l_", "n_") if name.startswith(p)), "")
    kernel = primitives.by_name(name).in_types == (primitives.AMat,) and prefix == "gram_"
    return name if kernel else name[len(prefix):]


@functools.cache
def _function(name: str) -> type[_Opaque]:
    """The opaque sympy function class of the primitive called ``name``."""
    prim = primitives.by_name(name)
    scalar_div = _label(name) == "div_safe" and prim.ret_type in _SCALARS
    base = _DivSafe if scalar_div else _Aggregate if prim.aggregator else _Opaque
    attrs = {"primitive": name, "nargs": len(prim.in_types)}
    if _label(name) in _NONNEGATIVE or name == "agg_std":
        attrs["is_nonnegative"] = True
    return type(name, (base,), attrs)


def _exact(label: str, args: list[sp.Expr]) -> sp.Expr | None:
    """The exact sympy form of a scalar primitive, or None if it has none."""
    x = args[0]
    forms = {
        "add": lambda: sp.Add(*args), "sub": lambda: sp.Add(x, sp.Mul(-1, args[-1])), "mul": lambda: sp.Mul(*args),
        "neg": lambda: sp.Mul(-1, x), "square": lambda: x**2, "abs": lambda: sp.Abs(x), "sign": lambda: sp.sign(x),
        "sqrt_abs": lambda: sp.sqrt(sp.Abs(x)), "log_abs": lambda: sp.log(sp.Abs(x) + EPS_SYMBOL),
        "relu": lambda: sp.Max(x, 0), "min": lambda: sp.Min(*args), "max": lambda: sp.Max(*args),
    }
    form = forms.get(label)
    return None if form is None else form()


def to_sympy(program: str | dgp.PrimitiveTree, evaluate: bool = True) -> sp.Expr:
    """Translate a program into a sympy expression (the mapping of the module docstring).

    Parameters
    ----------
    program : str or deap.gp.PrimitiveTree
        A program of root type NScalar, as its prefix string or its tree.
    evaluate : bool
        False keeps the program's structure (sympy cancels nothing): it prints as written.

    Raises
    ------
    EznasError
        For a malformed program or an unknown primitive or terminal.
    """
    tree = _tree(program)
    with sp.evaluate(evaluate):
        return gp.fold(tree, _translate)


def _translate(node: gp.Node, args: list[sp.Expr], key: str) -> sp.Expr:
    """One node of a program as sympy, from its arguments' forms (a `gp.fold` visitor)."""
    if isinstance(node, dgp.Terminal):
        if node.name in gp.CONSTANTS:
            return sp.Rational(str(gp.CONSTANTS[node.name][1]))
        return sp.Symbol(node.name, real=True)
    prim = primitives.by_name(node.name)
    scalar = prim.ret_type in _SCALARS and all(t in _SCALARS for t in prim.in_types)
    expr = _exact(_label(node.name), args) if scalar and not prim.aggregator else None
    return _function(node.name)(*args) if expr is None else expr


def _log_abs_arg(expr: sp.Expr) -> sp.Expr | None:
    """``u`` when ``expr`` is ``log(u + eps)``, else None."""
    if isinstance(expr, sp.log) and expr.args[0].is_Add and EPS_SYMBOL in expr.args[0].args:
        rest = [a for a in expr.args[0].args if a != EPS_SYMBOL]
        return rest[0] if len(rest) == 1 else sp.Add(*rest, evaluate=False)
    return None


def _relu_arg(expr: sp.Expr) -> sp.Expr | None:
    """``x`` when ``expr`` is ``Max(x, 0)`` (``Max(a, b)`` for ``Max(a, b, 0)``), else None."""
    if isinstance(expr, sp.Max) and sp.S.Zero in expr.args:
        return sp.Max(*[a for a in expr.args if a != sp.S.Zero])
    return None


def size(expr: sp.Expr) -> int:
    """Node count of a formula: that of the program that computes it (module docstring).

    Parameters
    ----------
    expr : sympy.Expr
        A formula of `to_sympy`, `simplify` or `verified`.
    """
    if expr.is_Atom or expr.is_number:
        return 1
    inner = _log_abs_arg(expr)
    if inner is None:
        inner = _relu_arg(expr)
    if inner is not None:
        return 1 + size(inner.args[0] if isinstance(inner, sp.Abs) else inner)
    if expr.is_Add:
        terms = [-t if t.could_extract_minus_sign() else t for t in expr.args]
        negated = all(t.could_extract_minus_sign() for t in expr.args)
        return len(terms) - 1 + sum(size(t) for t in terms) + int(negated)
    if expr.is_Mul:
        coeff, factors = expr.as_coeff_mul()
        top = [f for f in factors if not (f.is_Pow and f.exp.is_negative)]
        bottom = [1 / f for f in factors if f.is_Pow and f.exp.is_negative]
        items = [size(f) for f in top + bottom] + ([1] if abs(coeff) != 1 or not top else [])
        return len(items) - 1 + sum(items) + bool(coeff < 0)
    if expr.is_Pow:
        if expr.exp == 2:
            return 1 + size(expr.base)
        if expr.exp == sp.S.Half:
            return 1 + size(expr.base.args[0] if isinstance(expr.base, sp.Abs) else expr.base)
        if expr.exp.is_negative:
            return 2 + size(1 / expr)
        return 2 + size(expr.base)
    return len(expr.args) - 1 + sum(size(a) for a in expr.args) + (len(expr.args) == 1)


def _infix_op(expr: sp.Expr) -> str | None:
    """``+``, ``-`` or ``*`` when ``expr`` is matrix-level arithmetic, printed between its operands."""
    if isinstance(expr, _Opaque) and primitives.by_name(expr.primitive).ret_type in _MATRICES:
        return _INFIX.get(_label(expr.primitive))
    return None


class _Shared:
    """What both printers share: positive terms of a sum first (``a - b``, not ``-b + a``),
    ``relu``, ``max``/``min`` and primitives by their labels, matrix arithmetic in infix."""

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        return sorted(super()._as_ordered_terms(expr, order), key=lambda t: t.could_extract_minus_sign())

    def _print_Max(self, expr: sp.Max, exp: str | None = None) -> str:
        inner = _relu_arg(expr)
        return self._call("max", expr.args, exp) if inner is None else self._call("relu", [inner], exp)

    def _print_Min(self, expr: sp.Min, exp: str | None = None) -> str:
        return self._call("min", expr.args, exp)

    def _opaque(self, expr: _Opaque, exp: str | None, group: str, times: str) -> str:
        op = _infix_op(expr)
        if op is None:
            return self._call(_label(expr.primitive), expr.args, exp)
        body = f" {times if op == '*' else op} ".join(
            group.format(self._print(a)) if _infix_op(a) else self._print(a) for a in expr.args)
        return body if exp is None else f"{group.format(body)}^{{{exp}}}"


class _TextPrinter(_Shared, StrPrinter):
    """One line: statistics by name, ``|x|``, ``log_abs(x)``."""

    def _print_Abs(self, expr: sp.Abs) -> str:
        return f"|{self._print(expr.args[0])}|"

    def _print_log(self, expr: sp.log) -> str:
        inner = _log_abs_arg(expr)
        if inner is None:
            return f"log({self._print(expr.args[0])})"
        if isinstance(inner, sp.Abs):
            return f"log_abs({self._print(inner.args[0])})"
        return f"log({self._print(inner)} + eps)"

    def _print_Function(self, expr: sp.Function) -> str:
        return self._opaque(expr, None, "({})", "*") if isinstance(expr, _Opaque) else super()._print_Function(expr)

    def _call(self, label: str, args: list[sp.Expr], exp: None = None) -> str:
        return f"{label}({self.stringify(args, ', ')})"


class _LatexPrinter(_Shared, LatexPrinter):
    """LaTeX: statistics upright, primitives as operator names, ``eps`` as epsilon, ``\\cdot``
    products and ``\\odot`` elementwise matrix products."""

    def __init__(self) -> None:
        super().__init__({"mul_symbol": "dot"})

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        return r"\epsilon" if expr == EPS_SYMBOL else r"\mathrm{" + expr.name.replace("_", r"\_") + "}"

    def _print_Function(self, expr: sp.Function, exp: str | None = None) -> str:
        if isinstance(expr, _Opaque):
            return self._opaque(expr, exp, r"\left({}\right)", r"\odot")
        return super()._print_Function(expr, exp)

    def _call(self, label: str, args: list[sp.Expr], exp: str | None = None) -> str:
        power = "" if exp is None else f"^{{{exp}}}"
        name = label.replace("_", r"\_")
        return rf"\operatorname{{{name}}}{power}\left({', '.join(self._print(a) for a in args)}\right)"


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
        if isinstance(expr, _Opaque):
            prim = primitives.by_name(expr.primitive)
            if not prim.aggregator:
                value = prim.func(*args)
            else:
                value = prim.func(*[a.expand(len(self.batch.seg)) if a.dim() == 0 else a for a in args], self.layers)
            return value.double() if prim.ret_type in _SCALARS else value
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
    if isinstance(expr, _DivSafe) and bool((values(args[1]).abs() >= EPS).all()):
        return args[0] / args[1]
    return expr


def _pool_facts(expr: sp.Expr, values: _Values) -> sp.Expr:
    """Resolve piecewise primitives bottom-up by the branch that the whole batch takes."""
    if expr.is_Atom or (isinstance(expr, _Opaque) and primitives.by_name(expr.primitive).ret_type not in _SCALARS):
        return expr
    inner = _log_abs_arg(expr)
    if isinstance(inner, sp.Abs):  # keep log_abs whole: log(|x| + eps) is one primitive
        return sp.log(sp.Abs(_pool_facts(inner.args[0], values)) + EPS_SYMBOL)
    return _branch(expr.func(*[_pool_facts(a, values) for a in expr.args]), values)


def _tree(program: str | dgp.PrimitiveTree) -> dgp.PrimitiveTree:
    return gp.parse(program) if isinstance(program, str) else program


def _exact_form(tree: dgp.PrimitiveTree) -> sp.Expr:
    """The smallest exact form: the simplified translation, or the literal one where smaller
    (sympy's own rewriting can grow a formula, e.g. ``|a*b|`` into ``|a|*|b|``)."""
    return min((_simplest(to_sympy(tree)), to_sympy(tree, evaluate=False)), key=size)


def _render(tree: dgp.PrimitiveTree, expr: sp.Expr, exact: bool = True, simplified: bool = True) -> Simplified:
    return Simplified(program=str(tree), sympy=expr, text=_TextPrinter().doprint(expr),
                      latex=_LatexPrinter().doprint(expr), size=size(expr), exact=exact, simplified=simplified)


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
    tree = _tree(program)
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
    tree = _tree(program)
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
