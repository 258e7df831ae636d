"""Programs: typed generation never dead-ends, the string form round-trips, the parser is safe."""

from __future__ import annotations

import random

import pytest
from deap import gp

import primitives
from eznas import gp as programs
from eznas.errors import EznasError

TYPES = (primitives.WMat, primitives.AMat, primitives.Gram, primitives.LScalar, primitives.NScalar)


def _types_ok(tree: gp.PrimitiveTree) -> bool:
    """Every argument slot holds a node of the declared type."""
    stack = []
    for node in reversed(tree):
        if isinstance(node, gp.Primitive):
            args = [stack.pop() for _ in range(node.arity)]
            if any(a is not t for a, t in zip(args, node.args)):
                return False
        stack.append(node.ret)
    return len(stack) == 1


def test_generation_covers_every_type_and_depth_without_index_error():
    rng = random.Random(0)
    seen: set[str] = set()
    for typ in TYPES:
        for max_depth in range(0, 9):
            for method in ("grow", "full"):
                for _ in range(60):
                    tree = programs.generate(typ, min(2, max_depth), max_depth, method, rng)
                    assert tree.root.ret is typ
                    assert _types_ok(tree)
                    seen.update(node.name for node in tree)
    assert seen >= set(programs.primitive_set().mapping)  # every primitive and terminal is reachable


def test_depth_limits_hold_where_terminals_exist():
    rng = random.Random(1)
    for _ in range(500):
        d = rng.randint(1, 7)
        tree = programs.generate(programs.ROOT_TYPE, 1, d, "grow", rng)
        assert tree.height <= max(d, 2)  # NScalar has terminals; Gram needs 2 levels below it


def test_string_round_trip_on_random_trees():
    rng = random.Random(2)
    for _ in range(2000):
        tree = programs.generate(programs.ROOT_TYPE, 1, rng.randint(1, 8), rng.choice(("grow", "full")), rng)
        text = str(tree)
        back = programs.parse(text)
        assert str(back) == text
        assert [n.name for n in back] == [n.name for n in tree]


@pytest.mark.parametrize("text, needle", [
    ("__import__('os')", "cannot parse"),
    ("n_add(log_params)", "expects 2 arguments"),
    ("l_mean(W)", "unknown primitive"),
    ("agg_mean(W)", "type error"),
    ("W", "type error"),
    ("n_add(log_params, log_flops) extra", "trailing"),
    ("n_add(log_params,", "ends too early"),
])
def test_parser_rejects_bad_text(text, needle):
    with pytest.raises(EznasError, match=needle):
        programs.parse(text)


def test_infix_is_readable():
    tree = programs.parse("logdet_sum(gram_add(gram_abs(corr(A)), gram_abs(corr(G))))")
    assert programs.infix(tree) == "logdet_sum((abs(corr(A)) + abs(corr(G))))"
    tree = programs.parse("n_add(agg_mean(l_mul(log_snip, depth)), n_half)")
    assert programs.infix(tree) == "(mean((log_snip * depth)) + 0.5)"


def test_fold_keys_are_the_subtree_strings_and_known_subtrees_are_not_walked():
    rng = random.Random(3)
    for _ in range(300):
        tree = programs.generate(programs.ROOT_TYPE, 1, rng.randint(1, 8), "grow", rng)
        keys: list[str] = []
        programs.fold(tree, lambda node, args, key: keys.append(key) or len(args), None)
        assert sorted(keys) == sorted(str(gp.PrimitiveTree(tree[tree.searchSubtree(i)])) for i in range(len(tree)))
    tree = programs.parse("n_add(agg_mean(l_mul(log_snip, depth)), log_params)")
    visited: list[str] = []
    value = programs.fold(tree, lambda node, args, key: visited.append(node.name) or sum(args, 1),
                          lambda key: 100 if key == "agg_mean(l_mul(log_snip, depth))" else None)
    assert visited == ["log_params", "n_add"] and value == 1 + 100 + 1


def test_fold_walks_trees_deeper_than_the_recursion_limit():
    pset = programs.primitive_set()
    tree = gp.PrimitiveTree([pset.mapping["n_neg"]] * 2000 + [pset.mapping["log_params"]])
    assert programs.fold(tree, lambda node, args, key: args[0] + 1 if args else 0) == 2000
