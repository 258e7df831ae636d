"""Few-shot choice of a proxy: with k trained networks of a new space, keep the proxy that ranks them best.

What a user who can train a handful of networks of their own space gains over taking a proxy on
trust: `simulate` draws k networks of a labelled sample many times, picks the candidate proxy with
the highest Kendall tau-b on those k, and measures every candidate's tau-b on the rest of the
sample, so the chosen proxy is judged only on networks it was not chosen on. A network a proxy
failed on (NaN score) counts as its lowest-scored one, so every candidate is judged on the same
networks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats as sps


@dataclass(frozen=True)
class Draws:
    """The outcome of `simulate`: per draw, the chosen candidate and every candidate's tau on the rest.

    Attributes
    ----------
    k : labelled networks per draw.
    picks : [D] the candidate chosen in each draw.
    rest : candidate -> [D] its Kendall tau-b on the networks outside each draw's k (NaN where undefined).
    """

    k: int
    picks: tuple[str, ...]
    rest: Mapping[str, np.ndarray]

    @property
    def chosen(self) -> np.ndarray:
        """[D] the chosen candidate's tau on the rest, draw by draw."""
        return np.array([self.rest[name][d] for d, name in enumerate(self.picks)])

    @property
    def oracle(self) -> np.ndarray:
        """[D] the best candidate's tau on the rest (a bound: it looks at the networks it is judged on)."""
        return np.nanmax(np.stack(list(self.rest.values())), axis=0)

    def pick_share(self) -> dict[str, float]:
        """The fraction of draws that chose each candidate, most chosen first."""
        names, counts = np.unique(np.array(self.picks), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {str(names[i]): float(counts[i]) / len(self.picks) for i in order}


def failed_lowest(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``scores`` as floats with a failed network (NaN or infinite score) ranked below every other."""
    values = np.asarray(scores, dtype=float)
    return np.where(np.isfinite(values), values, -np.inf)


def _tau(scores: np.ndarray, accuracy: np.ndarray) -> float:
    """Kendall tau-b; NaN where it is undefined (constant scores or accuracies)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sps.ConstantInputWarning)
        return float(sps.kendalltau(scores, accuracy).statistic)


def kendall_tau(scores: Sequence[float] | np.ndarray, accuracy: Sequence[float] | np.ndarray) -> float:
    """Kendall tau-b of ``scores`` against ``accuracy`` over every network, a failed one ranked lowest."""
    return _tau(failed_lowest(scores), np.asarray(accuracy, dtype=float))


def simulate(scores: Mapping[str, Sequence[float] | np.ndarray], accuracy: Sequence[float] | np.ndarray, k: int,
             draws: int = 200, seed: int = 0) -> Draws:
    """Choose among ``scores`` (candidate -> [N] scores, in order of preference on ties) with ``k`` of the N
    networks labelled by ``accuracy``, ``draws`` times over random k-subsets drawn with ``seed``."""
    accuracy = np.asarray(accuracy, dtype=float)
    n = len(accuracy)
    if not 2 <= k <= n - 2:
        raise ValueError(f"k={k}: needs at least 2 labelled networks and 2 left to judge on (of {n})")
    table = {}
    for name, values in scores.items():
        values = failed_lowest(values)
        if values.shape != (n,):
            raise ValueError(f"{name}: {values.size} scores for {n} networks")
        table[name] = values
    rng = np.random.default_rng(seed)
    picks = []
    rest = {name: np.empty(draws) for name in table}
    for d in range(draws):
        labelled = np.zeros(n, dtype=bool)
        labelled[rng.choice(n, size=k, replace=False)] = True
        shown = {name: _tau(values[labelled], accuracy[labelled]) for name, values in table.items()}
        # an undefined tau is never chosen; max keeps the first of equal taus: the preferred candidate
        picks.append(max(shown, key=lambda name: shown[name] if math.isfinite(shown[name]) else -math.inf))
        for name, values in table.items():
            rest[name][d] = _tau(values[~labelled], accuracy[~labelled])
    return Draws(k, tuple(picks), rest)


def rank_mean(columns: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    """A committee of proxies over one sample: the mean of their normalised ranks (a failed network ranks lowest)."""
    if not columns:
        raise ValueError("a committee needs at least one proxy")
    ranks = [sps.rankdata(failed_lowest(c)) / len(c) for c in columns]
    return np.mean(ranks, axis=0)
