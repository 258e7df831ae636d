"""Fitness on real statistics: fuzzed programs never raise and stay finite, Kendall tau-b and
the worst value behave, and batched evaluation equals per-network evaluation."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from scipy import stats as sps

import primitives
from eznas import benchmarks, gp as programs
from eznas.probe import ProbeSettings
from eznas.fitness import WORST, Evaluator, Memo, aggregate_taus, evaluate, fitness_of, kendall_taus
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


@pytest.mark.slow
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


def kendall_tau(scores, accuracy, penalise_ties=False) -> float:
    return float(kendall_taus(np.asarray(scores)[None, :], accuracy, penalise_ties)[0])


def test_kendall_tau_b_and_the_worst_value():
    acc = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert kendall_tau(acc * 2, acc) == pytest.approx(1.0)
    assert kendall_tau(-acc, acc) == pytest.approx(-1.0)
    s = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    assert kendall_tau(s, acc) == pytest.approx(sps.kendalltau(s, acc).statistic)
    assert kendall_tau(np.full(5, 3.0), acc) == WORST
    assert kendall_tau(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), acc) == WORST
    assert kendall_tau(np.array([1.0, np.inf, 2.0, 3.0, 4.0]), acc) == WORST
    assert kendall_tau(s, np.full(5, 2.0)) == WORST and kendall_tau(s[:1], acc[:1]) == WORST


def _scipy_tau(scores: np.ndarray, accuracy: np.ndarray, penalise_ties: bool) -> float:
    """The per-program tau that fitness used before `kendall_taus`: scipy, then the tie penalty."""
    if not np.all(np.isfinite(scores)) or np.all(scores == scores[0]):
        return WORST
    tau = sps.kendalltau(scores, accuracy).statistic
    if penalise_ties:
        counts = np.unique(scores, return_counts=True)[1].astype(float)
        tau *= np.sqrt(1.0 - float((counts * (counts - 1) / 2).sum()) / (len(scores) * (len(scores) - 1) / 2))
    return float(tau)


@pytest.mark.parametrize("n", [2, 7, 80, 200])
def test_batched_taus_equal_scipy_bit_for_bit(n):
    rng = np.random.default_rng(n)
    accuracy = np.round(rng.normal(70, 5, n), 1)  # ties among accuracies, as in the benchmarks
    rows = [rng.normal(size=n), np.round(rng.normal(size=n), 1), rng.integers(0, 3, n).astype(float),
            accuracy * 2, -accuracy, np.where(rng.random(n) < 0.5, 1.0, rng.normal(size=n)), np.full(n, 0.5)]
    scores = np.stack(rows + [np.float32(r).astype(np.float64) for r in rng.normal(size=(40, n)) * 1e3])
    for penalise in (False, True):
        taus = kendall_taus(scores, accuracy, penalise)
        assert taus.tolist() == [_scipy_tau(row, accuracy, penalise) for row in scores]


@needs_data
def test_memoised_scores_equal_fresh_scores_whatever_the_memo_holds(batch):
    """One evaluator for many programs, with room for everything, with room for almost nothing
    (values dropped and computed again), or shared by four threads: the scores of a fresh
    evaluator per program, bit for bit."""
    rng = random.Random(4)
    trees = [programs.generate(programs.ROOT_TYPE, 2, 6, rng.choice(("grow", "full")), rng) for _ in range(60)]
    trees += trees[::-3]  # programs seen again: from the memo
    fresh = np.stack([Evaluator(batch).safe_scores(t) for t in trees])
    roomy, cramped = Evaluator(batch), Evaluator(batch, memo_bytes=1 << 16, numbers_bytes=1 << 10)
    assert np.array_equal(np.stack([roomy.safe_scores(t) for t in trees]), fresh, equal_nan=True)
    assert np.array_equal(np.stack([cramped.safe_scores(t) for t in trees]), fresh, equal_nan=True)
    shared = Evaluator(batch)
    with ThreadPoolExecutor(4) as pool:
        threaded = np.stack(list(pool.map(shared.safe_scores, trees)))
    assert np.array_equal(threaded, fresh, equal_nan=True)


def test_memo_drops_least_recently_used_values_beyond_its_budget():
    memo = Memo(budget=3 * 400)
    for key in "abc":
        memo.put(key, torch.zeros(100))  # 400 bytes each
    assert memo.get("a") is not None  # a is now the most recently used
    memo.put("d", torch.zeros(100))
    assert memo.get("b") is None and all(memo.get(k) is not None for k in "acd")
    memo.put("c", torch.zeros(200))  # replacing a value counts its new size only: a goes
    assert len(memo) == 2 and memo.get("a") is None
    memo.put("huge", torch.zeros(1000))  # over the whole budget: not held, nothing dropped
    assert memo.get("huge") is None and len(memo) == 2


@needs_data
def test_matrix_values_do_not_push_out_per_layer_numbers(batch):
    evaluator = Evaluator(batch, memo_bytes=1)  # no room for any matrix
    evaluator.scores(programs.parse("agg_mean(logdet(corr(a_abs(A))))"))
    for key in ("agg_mean(logdet(corr(a_abs(A))))", "logdet(corr(a_abs(A)))"):
        assert evaluator._recall(key) is not None
    assert evaluator._recall("corr(a_abs(A))") is None
    assert evaluator._recall("A") is None  # terminals are the batch's: never in the memo


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


@needs_data
def test_batch_digest_names_its_content(batch):
    """The key under which workers keep a pool: equal for equal content, new for any change."""
    again = concat([batch.select(range(6)), batch.select(range(6, batch.n_nets))])
    assert again.digest() == batch.digest()
    assert batch.select(range(1, batch.n_nets)).digest() != batch.digest()
    changed = batch.select(range(batch.n_nets))
    changed.layers["A"][0, 0, 0] += 1.0
    assert changed.digest() != batch.digest()
    relabelled = batch.select(range(batch.n_nets))
    relabelled.accuracy = relabelled.accuracy + 0.01
    assert relabelled.digest() != batch.digest()


def test_relative_fitness_is_the_margin_over_the_best_reference_per_task():
    """``tasks.relative_to``: a program that copies a reference scores 0 on its margin wherever that reference
    is the best one, the program's own taus are kept, and the better reference sets each task's bar."""
    rng = np.random.default_rng(0)
    accuracy = rng.normal(size=60)
    task = np.array(["nb201:cifar10"] * 30 + ["nds:DARTS_in"] * 30)
    good = accuracy + rng.normal(scale=0.5, size=60)  # tau well above the weak reference's
    weak = rng.normal(size=60)
    plain = fitness_of(good[None, :], accuracy, task, "space_mean")[0]
    relative = fitness_of(good[None, :], accuracy, task, "space_mean", reference=np.stack([weak, good]))[0]
    assert relative.taus == plain.taus
    assert relative.value == pytest.approx(0.0, abs=1e-12)
    only_weak = fitness_of(good[None, :], accuracy, task, "space_mean", reference=weak[None, :])[0]
    bars = [kendall_taus(weak[None, task == t], accuracy[task == t])[0] for t in ("nb201:cifar10", "nds:DARTS_in")]
    assert only_weak.value == pytest.approx(plain.value - np.mean(bars))
    assert only_weak.value > 0.3
