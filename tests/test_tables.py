"""Rendering (`eznas.tables`): cells, evaluation tables, bootstrap intervals, published-figure gaps, search
summaries and the inspect table, on synthetic results (no data needed)."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from scipy import stats as sps

from eznas.evaluate import Evaluation
from eznas.search import SearchResult
from eznas.tables import csv_text, format_number
from eznas.tables.evaluations import (bootstrap_interval, csv_table, markdown_table, metric_table, paired_difference,
                                      paired_section, paired_table, reference_section, summary)
from eznas.tables.runs import front_csv, table, versus_table
from eznas.tables.searches import summarise


def _evaluation(proxy: str, task: str, noise: float, seed: int = 0, failed: int = 0) -> Evaluation:
    rng = np.random.default_rng(seed)
    accuracy = np.linspace(60.0, 90.0, 200)
    scores = accuracy + rng.normal(0.0, noise, 200)
    scores[:failed] = np.nan
    return Evaluation(proxy, task, 0, 64, np.arange(200), accuracy, scores, np.full(200, 0.5), ())


def test_format_number() -> None:
    assert format_number(0.123456) == "0.1235" and format_number(2.0, 1) == "2.0"
    assert format_number(math.nan) == "–" and format_number(7) == "7" and format_number("x") == "x"


def test_csv_text_keeps_the_columns_in_order_and_drops_others() -> None:
    text = csv_text([{"b": 2, "a": 1, "c": 3}], ["a", "b"])
    assert text == "a,b\n1,2\n"


def test_evaluation_tables_carry_the_metrics() -> None:
    good, bad = _evaluation("params", "nb201:cifar10", 1.0), _evaluation("noise", "nb201:cifar10", 100.0, failed=3)
    rows = list(csv.DictReader(io.StringIO(csv_table([good, bad]))))
    assert [r["proxy"] for r in rows] == ["params", "noise"] and rows[1]["failed"] == "3"
    assert float(rows[0]["kendall_tau"]) == pytest.approx(sps.kendalltau(good.scores, good.accuracy).statistic)
    assert float(rows[0]["kendall_tau"]) > float(rows[1]["kendall_tau"])
    md = markdown_table([good, bad]).splitlines()
    assert md[0].startswith("| task | proxy |") and len(md) == 4 and "`noise`" in md[3]
    assert "3 failed" in summary(bad) and "Kendall tau-b" in summary(good)


def test_metric_table_counts_failures_in_brackets() -> None:
    results = {"nb201:cifar10": [_evaluation("a", "nb201:cifar10", 5.0, failed=2)],
               "nds:DARTS_in": [_evaluation("a", "nds:DARTS_in", 5.0)]}
    lines = metric_table(results, "kendall_tau", 3).splitlines()
    assert lines[0] == "| proxy | cifar10 | DARTS_in |"
    assert lines[2].startswith("| `a` |") and "(2)" in lines[2].split("|")[2] and "(" not in lines[2].split("|")[3]


def test_metric_table_names_tasks_in_full_where_their_datasets_repeat() -> None:
    results = {t: [_evaluation("a", t, 5.0)] for t in ("nb101:cifar10", "nb301:cifar10")}
    assert metric_table(results, "kendall_tau", 3).splitlines()[0] == "| proxy | nb101:cifar10 | nb301:cifar10 |"


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded() -> None:
    e = _evaluation("p", "nb201:cifar10", 10.0)
    lo, hi = bootstrap_interval(e, "kendall_tau")
    assert lo < e.kendall_tau < hi and hi - lo < 0.2
    assert bootstrap_interval(e, "kendall_tau") == (lo, hi)
    assert bootstrap_interval(e, "kendall_tau", seed=1) != (lo, hi)


def test_reference_section_flags_gaps_beyond_the_tolerance() -> None:
    # params tau near 1.0 is far above the published 0.59-0.62: a gap; flops is not in the results: no row
    lines = reference_section({"nb201:cifar10": [_evaluation("params", "nb201:cifar10", 0.01)]}).splitlines()
    assert len(lines) == 3 and "`params`" in lines[2] and "| yes (" in lines[2]


def _search(proxy: str, seed: int, accuracy: float) -> SearchResult:
    return SearchResult(task="nb201:cifar10", proxy=proxy, proxy_arg=proxy, strategy="random", budget=10, seed=seed,
                        jobs=1, population=None, tournament=None, index=seed, arch="a", score=1.0, accuracy=accuracy,
                        best_accuracy=94.37, percentile=90.0 + seed, n_scored=10, cycles=0, wall_seconds=1.0,
                        score_seconds=20.0, scored=((seed, 1.0),))


def test_search_summary_is_mean_and_sample_std_over_seeds() -> None:
    rows = summarise([_search("p", 0, 93.0), _search("p", 1, 94.0), _search("q", 0, 90.0)])
    assert [(r["proxy"], r["seeds"]) for r in rows] == [("p", 2), ("q", 1)]
    assert rows[0]["mean_accuracy"] == pytest.approx(93.5) and rows[0]["std_accuracy"] == pytest.approx(0.7071, abs=1e-4)
    assert math.isnan(rows[1]["std_accuracy"]) and rows[0]["mean_percentile"] == pytest.approx(90.5)


def test_inspect_table_marks_the_chosen_row_and_front_csv_has_unseen_columns() -> None:
    rows = [{"expr": f"e{i}", "infix": f"x{i}", "size": 3 + i, "depth": 1, "fitness": 0.5 - 0.1 * i,
             "taus": {"nb201:cifar10": 0.5 - 0.1 * i}} for i in range(3)]
    lines = table(rows, 1, {"valid": {}, "heldout": {"e1": 0.25}}).splitlines()
    assert lines[0].split()[-2:] == ["heldout", "expression"]  # an empty column is not shown
    assert lines[2].startswith(">>>>") and not lines[1].startswith(">>>>") and "0.2500" in lines[2]
    unseen = {"e1": {"nb201:cifar100": 0.25, "nb201:ImageNet16-120": 0.125}}
    kinds = {"nb201:cifar100": "heldout", "nb201:ImageNet16-120": "validate"}
    parsed = list(csv.reader(io.StringIO(front_csv(rows, unseen, kinds))))
    assert parsed[0] == ["size", "depth", "fitness", "nb201:cifar10", "heldout:nb201:cifar100",
                         "validate:nb201:ImageNet16-120", "infix", "expr"]
    assert parsed[2][4:6] == ["0.250000", "0.125000"] and parsed[1][4] == ""


def test_versus_table_has_one_row_per_task_and_their_mean() -> None:
    taus = {"nb201:cifar100": {"evolved": 0.75, "params": 0.5},
            "nb201:ImageNet16-120": {"evolved": 0.25, "params": 0.5}}
    lines = versus_table(taus, {"nb201:cifar100": 100, "nb201:ImageNet16-120": 60}).splitlines()
    assert lines[0].split() == ["task", "nets", "evolved", "params"]
    assert lines[1].split() == ["nb201:cifar100", "100", "0.7500", "0.5000"]
    assert lines[3].split() == ["mean", "160", "0.5000", "0.5000"]
    assert len(versus_table({"t": {"a": 0.5}}, {"t": 2}).splitlines()) == 2  # one task: no mean row


def test_policies_pick_by_pool_fitness_or_by_validation_tau() -> None:
    from eznas.errors import EznasError
    from eznas.report import choose

    rows = [{"expr": "a", "size": 9, "fitness": 0.60}, {"expr": "b", "size": 3, "fitness": 0.595},
            {"expr": "c", "size": 5, "fitness": 0.50}]
    assert choose(rows, "accuracy") == 0 and choose(rows, "parsimony") == 1
    assert choose(rows, "validation", {"a": 0.40, "b": 0.30, "c": 0.395}) == 2  # c is within 0.01 of a, and smaller
    with pytest.raises(EznasError, match="tasks.validate"):
        choose(rows, "validation", {})


def test_authors_section_compares_our_scores_with_the_files_values() -> None:
    from conftest import DATA_DIR
    from eznas import benchmarks
    from eznas.tables.evaluations import authors_section

    if DATA_DIR is None:
        pytest.skip("benchmark data not found")
    records = benchmarks.load_task("nb301:cifar10", DATA_DIR)[:50]
    theirs = np.array([r["zc"]["synflow"] for r in records])
    accuracy = np.array([r["accuracy"] for r in records])
    ours = Evaluation("synflow", "nb301:cifar10", 0, 64, np.arange(50), accuracy, theirs ** 3, np.ones(50), ())
    other = Evaluation("params", "nb301:cifar10", 0, 64, np.arange(50), accuracy, -theirs, np.ones(50), ())
    lines = authors_section({"nb301:cifar10": [ours, other]}, str(DATA_DIR)).splitlines()
    assert len(lines) == 3  # params has no value in the file
    cells = [c.strip() for c in lines[2].split("|")]
    assert cells[2] == "`synflow`" and cells[3] == "1.000"  # a monotone transform ranks alike
    assert cells[4] == cells[5] == f"{sps.kendalltau(theirs, accuracy).statistic:.3f}"


def test_a_paired_difference_resolves_a_clear_gap_and_not_an_empty_one() -> None:
    sharp, blurred = _evaluation("ours", "nb201:cifar10", 3.0), _evaluation("params", "nb201:cifar10", 30.0, seed=1)
    diff, lo, hi = paired_difference(sharp, blurred)
    assert diff == pytest.approx(sharp.kendall_tau - blurred.kendall_tau) and 0 < lo < diff < hi
    assert paired_difference(sharp, sharp) == (0.0, 0.0, 0.0)  # the same networks in both: no spread at all
    twin = _evaluation("params", "nb201:cifar10", 3.0, seed=2)
    _, lo, hi = paired_difference(sharp, twin)
    assert lo < 0 < hi  # two equally good proxies: the interval holds 0


def test_a_paired_difference_uses_the_networks_both_scored() -> None:
    ours, other = _evaluation("ours", "nb201:cifar10", 3.0, failed=20), _evaluation("params", "nb201:cifar10", 30.0)
    keep = np.isfinite(ours.scores)
    expected = (sps.kendalltau(ours.scores[keep], ours.accuracy[keep]).statistic
                - sps.kendalltau(other.scores[keep], other.accuracy[keep]).statistic)
    assert paired_difference(ours, other)[0] == pytest.approx(expected)
    shifted = Evaluation("params", "nb201:cifar10", 0, 64, np.arange(1, 201), other.accuracy, other.scores,
                         other.seconds, ())
    with pytest.raises(ValueError, match="same networks"):
        paired_difference(ours, shifted)


def test_the_paired_section_sets_the_first_proxy_against_the_best_baseline_and_params() -> None:
    results = {task: [_evaluation("mine.json", task, 3.0), _evaluation("params", task, 20.0, seed=1),
                      _evaluation("naswot", task, 10.0, seed=2)] for task in ("nb201:cifar10", "nb101:cifar10")}
    lines = paired_section("mine.json", paired_table(results))
    # two tasks that share a dataset keep their whole ids, as in every other table of the report
    rows = [line for line in lines if line.startswith("| nb201:cifar10") or line.startswith("| nb101:cifar10")]
    assert len(rows) == 2 and all("(`naswot`)" in row and row.count("[") == 2 for row in rows)
    assert "`mine.json`" in "\n".join(lines)
    assert paired_table({t: evals[1:] for t, evals in results.items()}) == []  # the first is a baseline
    assert paired_section("mine.json", []) == []
