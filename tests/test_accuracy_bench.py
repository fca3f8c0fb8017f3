"""The accuracy benchmark's pure parts: the holdout, MASE and sMAPE, aggregation and counts.

No statsforecast and no training: these run in the runtime virtualenv.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench import anchors, protocol, tables
from bench.accuracy import shown_command
from bench.protocol import BEST_CLASSICAL, DataSet, Score, Series


def test_the_holdout_is_the_last_h_points() -> None:
    insample, test = protocol.holdout(np.arange(10.0), 3)
    assert insample.tolist() == list(range(7)) and test.tolist() == [7, 8, 9]
    with pytest.raises(ValueError):
        protocol.holdout(np.arange(3.0), 3)  # nothing left to fit


def test_mase_is_scaled_by_the_in_sample_seasonal_difference() -> None:
    insample = np.array([1.0, 2, 3, 5, 2, 3, 4, 6])  # lag-4 differences: 1, 1, 1, 1
    test = np.array([3.0, 4])
    assert protocol.scale(insample, 4) == 1.0
    assert protocol.mase(insample, test, np.array([1.0, 1]), 4) == pytest.approx(2.5)
    # lag 1 without a season: mean |diff| = (1 + 1 + 2 + 3 + 1 + 1 + 2) / 7
    assert protocol.scale(insample, 1) == pytest.approx(11 / 7)
    # a season longer than the history falls back to lag 1
    assert protocol.scale(insample, 12) == protocol.scale(insample, 1)
    flat = np.ones(5)
    assert protocol.mase(flat, np.ones(2), np.ones(2), 1) == 0.0
    assert protocol.mase(flat, np.ones(2), np.zeros(2), 1) == math.inf


def test_smape_is_m4s_in_percent() -> None:
    assert protocol.smape(np.array([100.0]), np.array([100.0])) == 0.0
    assert protocol.smape(np.array([100.0, 0]), np.array([50.0, 0])) == pytest.approx(100 * 50 / 150)
    assert protocol.smape(np.array([1.0]), np.array([-1.0])) == pytest.approx(200.0)  # the bound


def test_naive_and_seasonal_naive() -> None:
    y = np.array([1.0, 2, 3, 4, 5, 6])
    assert protocol.naive(y, 3).tolist() == [6, 6, 6]
    assert protocol.seasonal_naive(y, 5, 4).tolist() == [3, 4, 5, 6, 3]
    assert protocol.seasonal_naive(y, 2, 1).tolist() == [6, 6]


def test_load_reads_wide_and_long_files(tmp_path: Path) -> None:
    (tmp_path / "w.csv").write_text(
        "timestamp,a,b,c\n" + "".join(f"{i},{i},{'' if i < 3 else 2 * i},{i}\n" for i in range(40))
    )
    series, skipped = protocol.load(DataSet("w", "yearly", 6, 1, targets=("a", "b")), tmp_path)
    assert [s.id for s in series] == ["a", "b"] and skipped == []
    assert len(series[1].values) == 37  # the leading NaN trimmed
    rows = [f"{t},{sid},{v}" for sid, n in (("y", 30), ("x", 12)) for t, v in enumerate(range(n))]
    (tmp_path / "l.csv").write_text("timestamp,series_id,value\n" + "\n".join(rows[::-1]) + "\n")
    series, skipped = protocol.load(DataSet("l", "yearly", 6, 1, layout="long"), tmp_path)
    assert [s.id for s in series] == ["y"] and skipped == ["x"]  # 12 - 6 < 10 points in-sample
    assert series[0].values.tolist() == list(range(30))  # sorted by time


def test_every_set_has_a_file_and_a_usable_protocol() -> None:
    assert len(protocol.SETS) == 23 and set(protocol.QUICK) <= set(protocol.BY_NAME)
    for s in protocol.SETS:
        assert s.h > 0 and s.season >= 1 and s.layout in ("wide", "long")


def score(m: float, smape: float = 10.0) -> list[Score]:
    return [Score(m, smape)]


def test_aggregate_is_a_geometric_mean_with_counts_against_the_better_baseline() -> None:
    scores = {
        "naive": {"a": score(1.0), "b": score(2.0)},
        "snaive": {"a": score(0.5), "b": score(4.0)},
        "m": {"a": score(0.4, 20.0), "b": score(2.2, 30.0)},  # beats a; b is 10 % worse than 2.0
    }
    a = protocol.aggregate(scores, "m", ["a", "b"])
    assert a.mase == pytest.approx(math.sqrt(0.4 * 2.2)) and a.smape == pytest.approx(25.0)
    assert (a.beats, a.worse, a.sets) == (1, 1, 2)
    scores["m"]["b"] = score(2.1)  # exactly 5 % worse is not "more than 5 % worse"
    assert protocol.aggregate(scores, "m", ["a", "b"]).worse == 0


def test_seeds_give_the_median_of_the_per_seed_aggregates() -> None:
    scores = {
        "naive": {"a": score(1.0), "b": score(1.0)},
        "snaive": {"a": score(1.0), "b": score(1.0)},
        "m": {
            "a": [Score(1.0, 1), Score(4.0, 1), Score(9.0, 1)],
            "b": [Score(1.0, 1), Score(1.0, 1), Score(0.5, 1)],
        },
    }
    a = protocol.aggregate(scores, "m", ["a", "b"])
    assert a.per_seed == pytest.approx((1.0, 2.0, math.sqrt(4.5)))
    assert a.mase == pytest.approx(2.0)
    assert (a.beats, a.worse) == (0, 1)  # per set medians: a 4.0, b 1.0
    # a deterministic method (one entry) stands for every seed
    assert protocol.aggregate(scores, "naive", ["a", "b"]).per_seed == (1.0,)


def test_best_classical_is_the_lowest_of_the_three_per_set() -> None:
    scores = {
        "AutoETS": {"a": score(1.0), "b": score(3.0)},
        "AutoTheta": {"a": score(2.0), "b": score(1.5)},
        "AutoARIMA": {"a": score(1.2)},
    }
    out = protocol.with_best_classical(scores)
    assert out[BEST_CLASSICAL] == {"a": score(1.0)}  # b lacks AutoARIMA
    assert protocol.common_sets(out, ["AutoETS", "AutoARIMA"]) == ["a"]


def test_score_set_checks_the_shape_and_averages_over_series() -> None:
    s = DataSet("x", "yearly", 2, 1)
    series = [Series("p", np.array([1.0, 2, 3, 4, 5])), Series("q", np.array([2.0, 2, 4, 4, 6]))]
    got = protocol.score_set(series, np.array([[4.0, 5], [4.0, 6]]), s)
    assert got.mase == pytest.approx(0.0) and got.n == 2
    with pytest.raises(ValueError):
        protocol.score_set(series, np.zeros((1, 2)), s)


def test_fast_anchors_need_no_statsforecast_and_cache_keys_are_stable() -> None:
    s = DataSet("x", "quarterly", 4, 4)
    series = [Series("p", np.arange(20.0))]
    out = anchors.forecast_sets([(s, series)], ["naive", "snaive"])
    assert out["naive"]["x"].values.tolist() == [[15.0] * 4]
    assert out["snaive"]["x"].values.tolist() == [[12.0, 13, 14, 15]]
    a, b = anchors.tasks(s, series, ["AutoETS"]), anchors.tasks(s, series, ["AutoETS"])
    assert a[0].key("2.1.1") == b[0].key("2.1.1") != a[0].key("2.1.2")
    tail = DataSet("x", "half-hourly", 4, 4, anchor_tail=5)
    assert len(anchors.tasks(tail, series, ["AutoARIMA"])[0].insample) == 5


def test_the_report_renders_and_the_shown_command_drops_output_flags() -> None:
    scores = protocol.with_best_classical(
        {
            m: {"airline": score(v)}
            for m, v in {
                "naive": 2.0,
                "snaive": 2.4,
                "AutoETS": 1.8,
                "AutoTheta": 0.8,
                "AutoARIMA": 0.6,
                "Seqcast": 0.7,
            }.items()
        }
    )
    text = tables.report(scores, [*anchors.METHODS, tables.SEQCAST], ["airline"], {})
    assert "| Seqcast | 1 | 0.700 | 0.389 | 1.167 | 1.167 |" in text
    cmd = shown_command(["--quick", "--json", "x.json", "--jobs", "2", "--seeds", "0", "1"])
    assert cmd.endswith("bench/accuracy.py --quick --seeds 0 1")


def test_msis_is_m4s_scaled_interval_score() -> None:
    insample = np.array([1.0, 3, 5, 7])  # scale: mean |diff| = 2
    test = np.array([10.0, 20.0])
    # step 1 inside a width-4 interval; step 2 misses the upper bound 18 by 2: 4 + 40 * 2
    got = protocol.msis(insample, test, np.array([8.0, 14]), np.array([12.0, 18]), 1)
    assert got == pytest.approx(((4 + 0) + (4 + 80)) / 2 / 2)


def test_interval_scores_pool_coverage_over_the_sets_points() -> None:
    s = DataSet("x", "yearly", 2, 1)
    series = [Series("p", np.array([1.0, 2, 3, 4, 5])), Series("q", np.array([2.0, 2, 4, 4, 6]))]
    # tests: p (4, 5), q (4, 6); the 80 % band holds 3 of 4 points, the 95 % band all of them
    bands = {
        80: (np.array([[3.5, 4.5], [3.5, 4.5]]), np.array([[4.5, 5.5], [4.5, 5.5]])),
        95: (np.array([[3.0, 4.0], [3.0, 4.0]]), np.array([[5.0, 6.0], [5.0, 6.0]])),
    }
    got = protocol.score_intervals(series, bands, s)
    assert got.coverage == {80: 75.0, 95: 100.0} and got.points == 4
    assert got.msis == pytest.approx(2.0)  # widths 2, no misses, in-sample scales 1 (p: 1, 1; q: 0, 2)
    with pytest.raises(ValueError, match="bounds of shape"):
        protocol.score_intervals(series, {80: bands[80], 95: (np.zeros((1, 2)), np.zeros((1, 2)))}, s)


def test_the_interval_table_aggregates_and_flags_sets_far_from_nominal() -> None:
    ok = protocol.IntervalScore({80: 80.0, 95: 95.0}, 5.0, 96)
    narrow = protocol.IntervalScore({80: 60.0, 95: 90.0}, 20.0, 96)
    iscores = {"AutoETS": {"a": [ok], "b": [ok]}, "Seqcast": {"a": [ok], "b": [narrow]}}
    text = tables.intervals(iscores, ["a", "b"])
    assert "| AutoETS | 2 | 80.0 | 95.0 | 5.000 | 1.000 | none |" in text
    # coverage 70 and 92.5 on average; MSIS sqrt(5 * 20) = 10, twice AutoETS's; b is 20 points off at 80
    assert "| Seqcast | 2 | 70.0 | 92.5 | 10.000 | 2.000 | b (80: 60) |" in text


def test_a_task_asked_for_levels_has_its_own_cache_key() -> None:
    s = DataSet("x", "quarterly", 4, 4)
    series = [Series("p", np.arange(20.0))]
    (ets,) = anchors.tasks(s, series, ["AutoETS"])
    (arima,) = anchors.tasks(s, series, ["AutoARIMA"])
    assert ets.levels == protocol.LEVELS and arima.levels == ()
    plain = anchors.Task(ets.set, ets.series, ets.method, ets.insample, ets.h, ets.season, ets.options)
    assert plain.key("2.1.1") != ets.key("2.1.1")


def test_the_calibration_bench_scores_the_newer_half_of_each_series() -> None:
    from bench.interval_calibration import interval_scores, newer_half

    series = np.array([0, 0, 0, 0, 1, 1, 1])
    origin = np.array([13, 10, 12, 11, 5, 7, 6])
    # series 0: origins 12 and 13 are newer; series 1 (three): the newest two of 5, 6, 7
    assert newer_half(series, origin).tolist() == [True, False, True, False, False, True, True]
    y = np.zeros((2, 1, 1))
    y[1] = 10.0  # outside both bands
    lo, up = np.full_like(y, -1.0), np.full_like(y, 1.0)
    wide_lo, wide_up = np.full_like(y, -2.0), np.full_like(y, 2.0)
    scales = np.full((2, 1, 1), 2.0)
    cover80, cover95, score = interval_scores([(lo, up), (wide_lo, wide_up)], y, scales)
    assert (cover80, cover95) == (50.0, 50.0)
    # width 4 on both points, plus 40 x the 8 the second misses by, over 2 points, scaled by 2
    assert score == pytest.approx((4 + 4 + 40 * 8) / 2 / 2)
