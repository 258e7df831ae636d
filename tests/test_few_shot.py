"""Few-shot choice of a proxy (`eznas.few_shot`): the pick is made on k networks and judged on the rest."""

import math

import numpy as np
import pytest
import scipy.stats as sps

from eznas.few_shot import kendall_tau, rank_mean, simulate


def _sample(n=100, seed=0):
    rng = np.random.default_rng(seed)
    accuracy = rng.normal(size=n)
    return accuracy, accuracy + rng.normal(scale=0.3, size=n), accuracy + rng.normal(scale=3.0, size=n)


def test_a_perfect_candidate_is_always_chosen_and_judged_perfect_on_the_rest():
    accuracy, _, noisy = _sample()
    draws = simulate({"noisy": noisy, "perfect": accuracy * 2 + 1}, accuracy, k=10, draws=50)
    assert set(draws.picks) == {"perfect"}
    assert np.allclose(draws.chosen, 1.0) and np.allclose(draws.oracle, 1.0)
    assert draws.pick_share() == {"perfect": 1.0}


def test_more_labelled_networks_pick_the_better_candidate_more_often():
    accuracy, good, noisy = _sample()
    share = {k: simulate({"noisy": noisy, "good": good}, accuracy, k=k, draws=200).pick_share().get("good", 0.0)
             for k in (3, 40)}
    assert share[40] > 0.95 and share[3] < share[40]


def test_equal_taus_keep_the_first_candidate():
    accuracy, good, _ = _sample()
    assert set(simulate({"first": good, "second": good.copy()}, accuracy, k=5, draws=30).picks) == {"first"}


def test_the_chosen_tau_is_measured_on_the_networks_outside_the_labelled_ones():
    accuracy, good, noisy = _sample(n=12)
    draws = simulate({"good": good, "noisy": noisy}, accuracy, k=10, draws=40, seed=3)
    # two networks are left per draw: every rest tau is that of a pair, -1 or 1 (accuracies are distinct)
    assert set(np.unique(np.concatenate(list(draws.rest.values())))) <= {-1.0, 1.0}
    assert np.all(draws.oracle >= draws.chosen)
    assert draws.k == 10 and len(draws.picks) == 40


def test_draws_follow_the_seed():
    accuracy, good, noisy = _sample()
    a, b, c = (simulate({"good": good, "noisy": noisy}, accuracy, k=8, draws=30, seed=s) for s in (1, 1, 2))
    assert a.picks == b.picks and np.array_equal(a.rest["noisy"], b.rest["noisy"])
    assert not np.array_equal(a.rest["noisy"], c.rest["noisy"])


def test_a_failed_network_ranks_lowest():
    accuracy = np.arange(10.0)
    scores = accuracy.copy()
    scores[0] = math.nan  # the least accurate network failed: the ranking stays perfect
    assert kendall_tau(scores, accuracy) == pytest.approx(1.0)
    scores[9] = math.nan  # the most accurate one failed too: it now ranks last
    assert kendall_tau(scores, accuracy) == pytest.approx(sps.kendalltau([-1, *range(1, 9), -1], accuracy).statistic)


def test_a_committee_ranks_by_the_mean_of_its_members_ranks():
    accuracy, good, noisy = _sample()
    assert kendall_tau(rank_mean([good]), accuracy) == pytest.approx(kendall_tau(good, accuracy))
    assert np.array_equal(rank_mean([good, np.exp(good)]), rank_mean([good]))  # ranks, not values
    assert np.allclose(rank_mean([good, -good]), rank_mean([noisy, -noisy]))  # opposites cancel to a constant


@pytest.mark.parametrize("k", [1, 99])
def test_too_few_labelled_or_left_networks_is_an_error(k):
    accuracy, good, _ = _sample()
    with pytest.raises(ValueError, match=f"k={k}"):
        simulate({"good": good}, accuracy, k=k)


def test_scores_of_the_wrong_length_are_an_error():
    accuracy, good, _ = _sample()
    with pytest.raises(ValueError, match="99 scores for 100 networks"):
        simulate({"good": good[:99]}, accuracy, k=5)
    with pytest.raises(ValueError, match="at least one"):
        rank_mean([])
