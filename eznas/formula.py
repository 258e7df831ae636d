"""Programs as sympy formulas: the translation (`to_sympy`), the node count of a formula (`size`) and
the printers (`text`, `latex`). `eznas.simplify` simplifies and verifies them.

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
negative power a division, a coefficient -1 a negation; a sum of negative terms is the negation
of their sum, unless a term costs no more as it is, as ``-a + b`` does as ``b - a``); ``x**2``, ``sqrt(|x|)``,
``log(|x| + eps)`` and ``Max(x, 0)`` (relu) 1 plus ``x``; other powers 2 plus the base. The
unsimplified translation of a program has its node count, or less where ``-a + b`` is ``b - a``.
"""

from __future__ import annotations

import functools

import sympy as sp
from deap import gp as dgp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

import primitives
from eznas import gp
from primitives._safe import EPS

EPS_SYMBOL = sp.Symbol("eps", positive=True)  # primitives._safe.EPS inside log_abs
MATRICES = (primitives.WMat, primitives.AMat, primitives.Gram)
SCALARS = (primitives.LScalar, primitives.NScalar)
_NONNEGATIVE = {"exp_clamped", "sigmoid", "std", "mean_abs", "frob", "max_abs", "eig_ratio", "eig_entropy"}
_INFIX = {"add": "+", "sub": "-", "mul": "*"}  # matrix-level arithmetic printed between its operands
_CONSTANT_AGGREGATE = {"agg_mean": 1, "agg_max": 1, "agg_min": 1, "agg_depth_mean": 1, "agg_std": 0, "l_delta": 0}


class Opaque(sp.Function):
    """A primitive with no exact sympy counterpart; ``primitive`` is its registry name."""

    primitive = ""
    is_real = True
    is_number = False  # no numeric value even of constant arguments (as sympy's undefined functions)


class Aggregate(Opaque):
    """A layer-level primitive that needs the pool layout; constant input evaluates."""

    @classmethod
    def eval(cls, x):
        factor = _CONSTANT_AGGREGATE.get(cls.primitive)
        if factor is not None and x.is_Number:
            return x * factor
        return None


class DivSafe(Opaque):
    """Scalar ``div_safe``: plain division only where the protection provably cannot trigger
    (a numeric divisor of magnitude >= EPS), or where both branches give 0 (``0 / y``)."""

    @classmethod
    def eval(cls, x, y):
        if x.is_zero or (y.is_Number and abs(y) >= EPS):
            return x / y
        return None


def label(name: str) -> str:
    """Display name: type prefix dropped (``n_log_abs`` -> ``log_abs``), ``agg_max`` -> ``max_layers``;
    the kernels AMat -> Gram keep theirs (``gram_sign(A)`` is not ``a_sign(A)``)."""
    if name.startswith("agg_"):
        return name[4:] + "_layers"
    prefix = next((p for p in ("w_", "a_", "gram_", "l_", "n_") if name.startswith(p)), "")
    kernel = primitives.by_name(name).in_types == (primitives.AMat,) and prefix == "gram_"
    return name if kernel else name[len(prefix):]


@functools.cache
def function(name: str) -> type[Opaque]:
    """The opaque sympy function class of the primitive called ``name``."""
    prim = primitives.by_name(name)
    scalar_div = label(name) == "div_safe" and prim.ret_type in SCALARS
    base = DivSafe if scalar_div else Aggregate if prim.aggregator else Opaque
    attrs = {"primitive": name, "nargs": len(prim.in_types)}
    if label(name) in _NONNEGATIVE or name == "agg_std":
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
    tree = program_tree(program)
    with sp.evaluate(evaluate):
        return gp.fold(tree, _translate)


def _translate(node: gp.Node, args: list[sp.Expr], key: str) -> sp.Expr:
    """One node of a program as sympy, from its arguments' forms (a `gp.fold` visitor)."""
    if isinstance(node, dgp.Terminal):
        if node.name in gp.CONSTANTS:
            return sp.Rational(str(gp.CONSTANTS[node.name][1]))
        return sp.Symbol(node.name, real=True)
    prim = primitives.by_name(node.name)
    scalar = prim.ret_type in SCALARS and all(t in SCALARS for t in prim.in_types)
    expr = _exact(label(node.name), args) if scalar and not prim.aggregator else None
    return function(node.name)(*args) if expr is None else expr


def log_abs_arg(expr: sp.Expr) -> sp.Expr | None:
    """``u`` when ``expr`` is ``log(u + eps)``, else None."""
    if isinstance(expr, sp.log) and expr.args[0].is_Add and EPS_SYMBOL in expr.args[0].args:
        rest = [a for a in expr.args[0].args if a != EPS_SYMBOL]
        return rest[0] if len(rest) == 1 else sp.Add(*rest, evaluate=False)
    return None


def relu_arg(expr: sp.Expr) -> sp.Expr | None:
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
    inner = log_abs_arg(expr)
    if inner is None:
        inner = relu_arg(expr)
    if inner is not None:
        return 1 + size(inner.args[0] if isinstance(inner, sp.Abs) else inner)
    if expr.is_Add:
        terms = [-t if t.could_extract_minus_sign() else t for t in expr.args]
        cost = len(terms) - 1 + sum(size(t) for t in terms)
        if all(t.could_extract_minus_sign() for t in expr.args):  # -(a + b), or a term kept as it is: (b - c) - a
            cost += min(1, *(size(t) - size(-t) for t in expr.args))
        return cost
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


def infix_op(expr: sp.Expr) -> str | None:
    """``+``, ``-`` or ``*`` when ``expr`` is matrix-level arithmetic, printed between its operands."""
    if isinstance(expr, Opaque) and primitives.by_name(expr.primitive).ret_type in MATRICES:
        return _INFIX.get(label(expr.primitive))
    return None


class _Shared:
    """What both printers share: positive terms of a sum first (``a - b``, not ``-b + a``),
    ``relu``, ``max``/``min`` and primitives by their labels, matrix arithmetic in infix."""

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        return sorted(super()._as_ordered_terms(expr, order), key=lambda t: t.could_extract_minus_sign())

    def _print_Max(self, expr: sp.Max, exp: str | None = None) -> str:
        inner = relu_arg(expr)
        return self._call("max", expr.args, exp) if inner is None else self._call("relu", [inner], exp)

    def _print_Min(self, expr: sp.Min, exp: str | None = None) -> str:
        return self._call("min", expr.args, exp)

    def _opaque(self, expr: Opaque, exp: str | None, group: str, times: str) -> str:
        op = infix_op(expr)
        if op is None:
            return self._call(label(expr.primitive), expr.args, exp)
        body = f" {times if op == '*' else op} ".join(
            group.format(self._print(a)) if infix_op(a) else self._print(a) for a in expr.args)
        return body if exp is None else f"{group.format(body)}^{{{exp}}}"


class TextPrinter(_Shared, StrPrinter):
    """One line: statistics by name, ``|x|``, ``log_abs(x)``."""

    def _print_Abs(self, expr: sp.Abs) -> str:
        return f"|{self._print(expr.args[0])}|"

    def _print_log(self, expr: sp.log) -> str:
        inner = log_abs_arg(expr)
        if inner is None:
            return f"log({self._print(expr.args[0])})"
        if isinstance(inner, sp.Abs):
            return f"log_abs({self._print(inner.args[0])})"
        return f"log({self._print(inner)} + eps)"

    def _print_Function(self, expr: sp.Function) -> str:
        return self._opaque(expr, None, "({})", "*") if isinstance(expr, Opaque) else super()._print_Function(expr)

    def _call(self, label: str, args: list[sp.Expr], exp: None = None) -> str:
        return f"{label}({self.stringify(args, ', ')})"


class LatexPrinter(_Shared, LatexPrinter):
    """LaTeX: statistics upright, primitives as operator names, ``eps`` as epsilon, ``\\cdot``
    products and ``\\odot`` elementwise matrix products."""

    def __init__(self) -> None:
        super().__init__({"mul_symbol": "dot"})

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        return r"\epsilon" if expr == EPS_SYMBOL else r"\mathrm{" + expr.name.replace("_", r"\_") + "}"

    def _print_Function(self, expr: sp.Function, exp: str | None = None) -> str:
        if isinstance(expr, Opaque):
            return self._opaque(expr, exp, r"\left({}\right)", r"\odot")
        return super()._print_Function(expr, exp)

    def _call(self, label: str, args: list[sp.Expr], exp: str | None = None) -> str:
        power = "" if exp is None else f"^{{{exp}}}"
        name = label.replace("_", r"\_")
        return rf"\operatorname{{{name}}}{power}\left({', '.join(self._print(a) for a in args)}\right)"




def program_tree(program: str | dgp.PrimitiveTree) -> dgp.PrimitiveTree:
    return gp.parse(program) if isinstance(program, str) else program




def text(expr: sp.Expr) -> str:
    """A formula in one readable line."""
    return TextPrinter().doprint(expr)


def latex(expr: sp.Expr) -> str:
    """A formula in LaTeX."""
    return LatexPrinter().doprint(expr)
