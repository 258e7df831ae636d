"""Variation operators: the typed one-point crossover keeps programs well typed and draws the
same children in every process (DEAP's ``cxOnePoint`` does not: it draws the swapped type from
a set of classes, ordered by memory address)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from deap import gp

from conftest import REPO
from eznas import gp as programs
from eznas.evolve import crossover_one_point, select

CHILDREN_DIGEST = """
import hashlib, random
from deap import gp
from eznas import gp as programs
from eznas.evolve import crossover_one_point
trees = [programs.generate(programs.ROOT_TYPE, 2, 6, "grow", random.Random(i)) for i in range(80)]
children = [crossover_one_point(gp.PrimitiveTree(list(trees[i])), gp.PrimitiveTree(list(trees[i + 1])), random.Random(i))
            for i in range(0, 80, 2)]
print(hashlib.sha256(repr([(str(a), str(b)) for a, b in children]).encode()).hexdigest())
"""


@pytest.mark.slow
def test_crossover_draws_the_same_children_in_every_process():
    digests = {subprocess.run([sys.executable, "-c", CHILDREN_DIGEST], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(6)}
    assert len(digests) == 1


def test_crossover_swaps_subtrees_of_one_type_and_keeps_programs_valid():
    swapped = 0
    for seed in range(200):
        rng = random.Random(seed)
        a = programs.generate(programs.ROOT_TYPE, 2, 6, "grow", rng)
        b = programs.generate(programs.ROOT_TYPE, 2, 6, "grow", rng)
        before = sorted((str(a), str(b)))
        ca, cb = crossover_one_point(gp.PrimitiveTree(list(a)), gp.PrimitiveTree(list(b)), random.Random(seed))
        for child in (ca, cb):
            assert str(programs.parse(str(child))) == str(child)  # well typed: the parser type-checks every node
        assert len(ca) + len(cb) == len(a) + len(b)
        assert ca[0] is a[0] and cb[0] is b[0]  # roots stay
        swapped += sorted((str(ca), str(cb))) != before
    assert swapped > 100  # 146 of the 200 pairs change (the rest: one-node trees, or equal subtrees swapped)


def test_crossover_leaves_single_node_trees_alone():
    leaf = programs.parse("log_params")
    other = programs.parse("n_add(log_params, log_flops)")
    a, b = crossover_one_point(gp.PrimitiveTree(list(leaf)), gp.PrimitiveTree(list(other)), random.Random(0))
    assert str(a) == "log_params" and str(b) == "n_add(log_params, log_flops)"


def test_parsimony_turns_tournaments_towards_smaller_programs():
    """With parsimony 0 the fitter program wins every tournament it is in; a coefficient larger
    than the fitness gap per extra node hands those to the smaller one (gplearn's parsimony
    coefficient). The same seed draws the same tournaments, so nothing else changes."""
    small, big = programs.parse("log_params"), programs.parse("n_add(n_abs(log_params), n_abs(log_flops))")
    population, fitness = [small, big], [0.50, 0.52]  # big: 4 more nodes, 0.02 more fitness
    plain = select(population, fitness, 40, 2, random.Random(0))
    pressed = select(population, fitness, 40, 2, random.Random(0), parsimony=0.01)
    assert all(p is q or (p is big and q is small) for p, q in zip(plain, pressed))
    assert plain.count(big) > plain.count(small) and pressed.count(small) > pressed.count(big)
