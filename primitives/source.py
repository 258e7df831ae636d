"""Standalone Python source of primitives, for `eznas export` (STYLE item 10).

`source_of(names)` returns code that defines every named primitive under its registry
name and imports only torch, math and the standard library. It is assembled from
`inspect.getsource` of the module-level functions; the private helpers and constants
a function uses are found by scanning its bytecode for global loads, so a new
primitive needs only its registry row. Anything else a function refers to (another
module, an object that is not a function or number) is refused with an error.
"""

import builtins
import dis
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import CodeType, FunctionType, ModuleType

from .layers import Layers
from .registry import Primitive, by_name

_ALLOWED_MODULES = ("math", "torch")


@dataclass
class _Needs:
    """What the emitted file must define: imports, constants, functions, `Layers`."""

    modules: set[str] = field(default_factory=set)  # besides torch, always imported
    constants: dict[str, int | float] = field(default_factory=dict)
    functions: dict[str, FunctionType] = field(default_factory=dict)
    layers: bool = False


def _global_loads(code: CodeType) -> set[str]:
    """Names that `code`, or code nested in it, loads as globals."""
    names = {
        ins.argval
        for ins in dis.get_instructions(code)
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    }
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _global_loads(const)
    return names


def _add_function(func: FunctionType, needs: _Needs) -> None:
    """Record `func` and, recursively, every global it uses."""
    if needs.functions.setdefault(func.__name__, func) is not func:
        raise ValueError(f"two exported functions are both named {func.__name__!r}")
    for name in sorted(_global_loads(func.__code__)):
        if name not in func.__globals__:
            if name in vars(builtins):
                continue
            raise NameError(f"{func.__qualname__} uses undefined global {name!r}")
        value = func.__globals__[name]
        if isinstance(value, ModuleType) and value.__name__ in _ALLOWED_MODULES:
            needs.modules.add(value.__name__)
        elif isinstance(value, FunctionType):
            if name != value.__name__:
                raise ValueError(f"{func.__qualname__} calls {value.__name__} as {name!r}")
            if needs.functions.get(name) is not value:
                _add_function(value, needs)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            needs.constants[name] = value
        elif value is Layers:
            needs.layers = True
        else:
            raise TypeError(
                f"{func.__qualname__} uses {name!r} ({type(value).__name__}), which exported "
                f"code cannot define: use only torch, math, numbers and module-level functions"
            )


def _emit(needs: _Needs, rows: list[Primitive]) -> str:
    """Join imports, constants, `Layers`, function sources and registry-name aliases."""
    standard = ["from dataclasses import dataclass"] if needs.layers else []
    if "math" in needs.modules:
        standard.append("import math")
    blocks = ["\n".join(standard) + "\n\nimport torch" if standard else "import torch"]
    if needs.constants:
        blocks.append("\n".join(f"{k} = {v!r}" for k, v in sorted(needs.constants.items())))
    if needs.layers:
        blocks.append(inspect.getsource(Layers).rstrip())
    ordered = sorted(
        needs.functions.values(), key=lambda f: (f.__module__, f.__code__.co_firstlineno)
    )
    blocks.extend(inspect.getsource(f).rstrip() for f in ordered)
    aliases = [f"{row.name} = {row.func.__name__}" for row in rows if row.name != row.func.__name__]
    if aliases:
        blocks.append("\n".join(aliases))
    return "\n\n\n".join(blocks) + "\n"


def source_of(names: Iterable[str]) -> str:
    """Return standalone Python source defining the named primitives.

    Parameters
    ----------
    names : Iterable[str]
        Registry names; duplicates are ignored.

    Returns
    -------
    str
        Source that starts with its imports (``import math``, ``import torch``), then
        the constants, the `Layers` dataclass when an aggregator is named, the helper
        and primitive functions, and one ``name = function`` alias per primitive whose
        registry name differs from its function's name.

    Raises
    ------
    KeyError
        For a name with no row in `primitives.registry.PRIMITIVES`.
    """
    rows = [by_name(name) for name in dict.fromkeys(names)]
    needs = _Needs()
    for row in rows:
        _add_function(row.func, needs)
        needs.layers = needs.layers or row.aggregator
    clashes = {
        row.name for row in rows if needs.functions.get(row.name, row.func) is not row.func
    }
    clashes |= {row.name for row in rows if row.name in needs.constants}
    if clashes:
        raise ValueError(f"registry names {sorted(clashes)} clash with exported definitions")
    return _emit(needs, rows)
