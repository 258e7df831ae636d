"""Fitness on real statistics: fuzzed programs never raise and stay finite, Kendall tau-b and
the worst value behave, and batched evaluation equals per-network evaluation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy import stats as sps

import primitives
from eznas import benchmarks, gp as programs
from eznas.probe import ProbeSettings
from eznas.fitness import WORST, Evaluator, aggregate_taus, evaluate, kendall_tau
from eznas.pool import compute_stats
from eznas.statsbatch import concat, stack

from conftest import needs_data

TYPES = (primitives.WMat, primitives.AMat, primitives.Gram, primitives.LScalar, primitives.NScalar)
PROBE = ProbeSettings(batch_size=16, features=16, weight_rows=8, weight_cols=8, max_layers=6)


@pytest.fixture(scope="module")
def batch():
    torch.set_num_threads(1)
    parts = []
    for task, k in (("nb201:cifar10", 6), ("nds:DARTS_in", 3), ("nds:ResNeXt-B_in", 3)):
        records = benchmarks.sample(task, k, 21)
        stats = [compute_stats(task, r["arch"], PROBE) for r in records]
        parts.append(stack(stats, [r["accuracy"] for r in records], [task] * k, [r["index"] for r in records]))
    return concat(parts)


@needs_data
def test_fuzz_5000_random_programs_on_real_stats(batch):
    rng = random.Random(0)
    evaluator = Evaluator(batch, memo_bytes=1 << 26)
    n_layers, n_nets = len(batch.seg), batch.n_nets
    lead = {primitives.NScalar: n_nets}
    for i in range(5000):
        typ = TYPES[i % len(TYPES)]
        tree = programs.generate(typ, 1, rng.randint(1, 10), rng.choice(("grow", "full")), rng)
        value = evaluator.scores(tree)
        assert value.shape[0] == lead.get(typ, n_layers), str(tree)
        assert torch.isfinite(value).all(), str(tree)
        if typ is primitives.NScalar:  # fitness is Kendall tau-b of these very scores, task by task
            f = evaluate(evaluator, tree, penalise_ties=False)
            scores = value.double().numpy()
            for task, tau in f.taus.items():
                s, a = scores[batch.task == task], batch.accuracy[batch.task == task]
                assert tau == (WORST if np.all(s == s[0]) else pytest.approx(sps.kendalltau(s, a).statistic)), str(tree)


@needs_data
def test_batched_scores_equal_per_network_scores(batch):
    rng = random.Random(1)
    whole = Evaluator(batch)
    singles = [Evaluator(batch.select([i])) for i in range(batch.n_nets)]
    for _ in range(40):
        tree = programs.generate(programs.ROOT_TYPE, 2, 6, "grow", rng)
        together = whole.scores(tree)
        alone = torch.cat([e.scores(tree) for e in singles])
        assert torch.allclose(together, alone, rtol=1e-4, atol=1e-5), str(tree)


def test_kendall_tau_b_and_the_worst_value():
    acc = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert kendall_tau(acc * 2, acc) == pytest.approx(1.0)
    assert kendall_tau(-acc, acc) == pytest.approx(-1.0)
    s = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    assert kendall_tau(s, acc) == pytest.approx(sps.kendalltau(s, acc).statistic)
    assert kendall_tau(np.full(5, 3.0), acc) == WORST
    assert kendall_tau(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), acc) == WORST
    assert kendall_tau(np.array([1.0, np.inf, 2.0, 3.0, 4.0]), acc) == WORST


def test_penalised_tau_counts_tied_scores_against():
    acc = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    untied = np.array([2.0, 1.0, 3.0, 4.0, 6.0, 5.0])
    assert kendall_tau(untied, acc, penalise_ties=True) == pytest.approx(kendall_tau(untied, acc))
    # saturating the three worst networks to one value: tau-b rises, the penalised tau falls
    saturated = np.array([0.0, 0.0, 0.0, 4.0, 6.0, 5.0])
    assert kendall_tau(saturated, acc) > kendall_tau(untied, acc)
    assert kendall_tau(saturated, acc, penalise_ties=True) < kendall_tau(untied, acc, penalise_ties=True)
    # by hand: C = 11, D = 1 over 15 pairs, 3 tied -> (C - D) / 15
    assert kendall_tau(saturated, acc, penalise_ties=True) == pytest.approx(10 / 15)


def test_space_mean_weighs_each_search_space_equally():
    taus = {"nb201:cifar10": 0.8, "nds:DARTS_in": 0.2, "nds:Amoeba_in": 0.4, "nds:NASNet_in": 0.6}
    assert aggregate_taus(taus, "space_mean") == pytest.approx((0.8 + 0.4) / 2)
    assert aggregate_taus(taus, "mean") == pytest.approx(0.5)
    assert aggregate_taus(taus, "min") == pytest.approx(0.2)


def test_family_aggregates_weigh_each_family_and_reward_the_worst():
    taus = {"nb201:cifar10": 0.8, "nds:DARTS_in": 0.2, "nds:Amoeba_in": 0.4, "nds:ResNeXt-A_in": 0.6}
    families = [0.8, 0.3, 0.6]  # nb201, nds-cell (mean of two), nds-anynet
    assert aggregate_taus(taus, "space_mean") == pytest.approx(np.mean(families))
    assert aggregate_taus(taus, "space_min") == pytest.approx(0.3)
    soft = aggregate_taus(taus, "space_softmin")
    assert 0.3 < soft < np.mean(families)
    assert soft == pytest.approx(-0.05 * np.log(np.mean(np.exp(-np.array(families) / 0.05))))
    worse = {**taus, "nb201:cifar10": 0.7}  # the best family drops by 0.1: the soft minimum barely moves
    weaker = {**taus, "nds:DARTS_in": 0.0}  # the worst family drops by 0.1: it moves almost as much
    assert aggregate_taus(taus, "space_softmin") - aggregate_taus(worse, "space_softmin") < 0.01
    assert aggregate_taus(taus, "space_softmin") - aggregate_taus(weaker, "space_softmin") > 0.08


@needs_data
def test_fitness_aggregates_per_task(batch):
    tree = programs.parse("log_params")
    mean = evaluate(Evaluator(batch), tree, "mean")
    worst = evaluate(Evaluator(batch), tree, "min")
    assert set(mean.taus) == {"nb201:cifar10", "nds:DARTS_in", "nds:ResNeXt-B_in"}
    assert mean.value == pytest.approx(np.mean(list(mean.taus.values())))
    assert worst.value == pytest.approx(min(mean.taus.values()))
    by_space = evaluate(Evaluator(batch), tree, "space_mean")
    t = mean.taus
    assert by_space.value == pytest.approx((t["nb201:cifar10"] + t["nds:DARTS_in"] + t["nds:ResNeXt-B_in"]) / 3)
    constant = evaluate(Evaluator(batch), programs.parse("n_one"))
    assert constant.value == WORST and not constant.valid
