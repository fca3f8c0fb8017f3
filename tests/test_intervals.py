"""Prediction intervals (``service.bundle.intervals``): the conformal calibration, its coverage on
exchangeable windows, the scaling with each window's spread, and how ``/v1`` and ``/v2`` serve them.

The served numbers are checked by hand: the stub forecast of step ``h`` is the last value plus
``h``, the windows ``1..6`` move by 1 a step (spread 1), and the calibration below has widths
1, 2, 3 spreads at 80 % and 2, 4, 6 at 95 %.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient
from pydantic import ValidationError
from service_stubs import make_manifest, publish_stub, settings_for, stub_loader

from service.app import create_app
from service.bundle import intervals
from service.bundle.manifest import Intervals
from service.schemas import ForecastResponse

SIX = [1, 2, 3, 4, 5, 6]
CALIBRATION = Intervals(
    windows=19, errors=57, levels=[80.0, 95.0], widths=[[[1.0], [2.0], [3.0]], [[2.0], [4.0], [6.0]]]
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    model_dir = tmp_path_factory.mktemp("interval-models")
    publish_stub(model_dir, make_manifest("bands").model_copy(update={"intervals": CALIBRATION}))
    two = Intervals(
        windows=99,
        errors=198,
        levels=[50.0, 90.0],
        widths=[[[1.0, 10.0], [1.0, 10.0]], [[2.0, 20.0], [2.0, 20.0]]],
    )
    multi = make_manifest("multi", features=("a", "b"), targets=("a", "b"), window=4, horizon=2)
    publish_stub(model_dir, multi.model_copy(update={"intervals": two}))
    positive = CALIBRATION.model_copy(update={"positive": True})
    publish_stub(model_dir, make_manifest("positive").model_copy(update={"intervals": positive}))
    publish_stub(model_dir, make_manifest("plain"))
    own = [[[2.0], [2.0], [2.0]], [[4.0], [4.0], [4.0]]]
    panel = CALIBRATION.model_copy(update={"series": {"quiet": [0.5], "noisy": [3.0]}, "series_widths": own})
    publish_stub(model_dir, make_manifest("panel").model_copy(update={"intervals": panel}))
    return create_app(settings_for(model_dir), loader=stub_loader).test_client()


def forecast(client: FlaskClient, model: str, values: list[Any], **body: Any) -> Any:
    return client.post(f"/v1/models/{model}/forecast", json={"series": [{"values": values}], **body})


# --- calibration -----------------------------------------------------------------------------------


def test_the_width_at_a_level_is_the_conformal_rank_of_the_scores() -> None:
    n = 24  # one step: the pooled errors are the windows' own
    x = np.tile(np.arange(6, dtype=np.float32)[None, :, None], (n, 1, 1))  # spread 1
    errors = np.arange(1, n + 1, dtype=np.float64)  # window i misses by i spreads
    y = np.zeros((n, 1, 1))
    cal = intervals.calibrate(x, y, (y.T + errors).T)
    assert cal.windows == n and cal.max_level == 96.0  # 100 n / (n + 1)
    assert cal.levels[-1] == 96 and 97 not in cal.levels
    by_level = dict(zip(cal.levels, cal.widths, strict=True))
    assert by_level[80.0] == [[20.0]]  # ceil(25 * 0.8) = 20th smallest
    assert by_level[50.0] == [[13.0]]  # ceil(12.5) = 13
    assert by_level[96.0] == [[24.0]]  # the largest score: the highest level 24 windows support
    # between grid levels, linear; below the first, from 0 at level 0
    assert intervals.width(cal, 80.5)[0, 0] == pytest.approx(20.5)
    assert intervals.width(cal, 0.5)[0, 0] == pytest.approx(0.5 * by_level[1.0][0][0])
    with pytest.raises(ValueError, match="outside"):
        intervals.width(cal, 96.5)


def test_steps_are_pooled_so_few_windows_still_reach_95() -> None:
    """13 windows of 12 steps (the demo model's validation): 156 errors reach 99.4 %; each step's
    width follows its own mean error (here growing with the step)."""
    n, h = 13, 12
    rng = np.random.default_rng(0)
    x = np.tile(np.arange(6, dtype=np.float64)[None, :, None], (n, 1, 1))  # spread 1
    base = rng.exponential(size=(n, 1, 1))
    errors = base * np.arange(1, h + 1)[None, :, None]  # step k misses k times as much
    cal = intervals.calibrate(x, np.zeros((n, h, 1)), errors)
    assert cal.windows == n and cal.errors == n * h
    assert cal.max_level == pytest.approx(100 * 156 / 157, abs=1e-5) and 95.0 in cal.levels
    w95 = np.asarray(cal.widths[cal.levels.index(95.0)])[:, 0]
    np.testing.assert_allclose(w95 / w95[0], np.arange(1, h + 1))  # the steps' shape is kept
    assert np.all(np.diff(np.asarray(cal.widths), axis=0) >= 0)  # wider with the level, every step


def test_the_grid_closes_at_the_highest_level_the_errors_support() -> None:
    x = np.random.default_rng(0).normal(size=(30, 8, 1))
    y, f = np.random.default_rng(1).normal(size=(2, 30, 3, 1))
    cal = intervals.calibrate(x, y, f)
    assert cal.max_level == pytest.approx(100 * 90 / 91, abs=1e-5) and cal.levels[-2] == 98


def test_coverage_on_exchangeable_windows_is_nominal() -> None:
    """Windows of noise around a level, scale varying tenfold across windows: calibrated on 2,000,
    the intervals of 4,000 fresh ones cover 80 % and 95 % of their actuals (to 2 points)."""
    rng = np.random.default_rng(7)

    def windows(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = 10 ** rng.uniform(0, 1, size=(n, 1, 1))
        x = 100 + scale * rng.normal(size=(n, 24, 1))
        y = 100 + scale * rng.normal(size=(n, 6, 1))
        return x, y, np.full_like(y, 100.0)

    cal = intervals.calibrate(*windows(2000))
    x, y, f = windows(4000)
    for level, (lower, upper) in zip((80, 95), intervals.bounds(cal, x, f, [80, 95]), strict=True):
        covered = float(((lower <= y) & (y <= upper)).mean()) * 100
        assert abs(covered - level) < 2, (level, covered)
    # a width that ignored each window's scale could not cover both the small and the large ones
    assert cal.scale == "mean-abs-change"


def test_a_series_ten_times_larger_gets_a_range_ten_times_wider() -> None:
    x = np.asarray([[[1.0], [3.0], [2.0], [5.0]]])  # spread (2 + 1 + 3) / 3 = 2
    f = np.asarray([[[4.0], [4.0], [4.0]]])
    ((lower, upper),) = intervals.bounds(CALIBRATION, x, f, [80])
    np.testing.assert_allclose(upper[0, :, 0] - f[0, :, 0], [2, 4, 6])
    ((lower10, upper10),) = intervals.bounds(CALIBRATION, 10 * x, 10 * f, [80])
    np.testing.assert_allclose(upper10 - lower10, 10 * (upper - lower), rtol=1e-6)


def test_a_window_that_does_not_move_still_gets_a_range() -> None:
    x, f = np.full((1, 6, 1), 50.0), np.full((1, 3, 1), 50.0)
    ((lower, upper),) = intervals.bounds(CALIBRATION, x, f, [95])
    np.testing.assert_allclose(upper[0, :, 0] - 50, [0.1, 0.2, 0.3], atol=1e-5)  # spread: 0.1 % of 50


def test_the_manifest_refuses_a_calibration_that_does_not_fit() -> None:
    manifest = make_manifest("m", horizon=4)  # the calibration has 3 steps
    with pytest.raises(ValidationError, match="horizon, targets"):
        type(manifest).model_validate(manifest.model_dump() | {"intervals": CALIBRATION.model_dump()})
    with pytest.raises(ValidationError, match="increase"):
        Intervals(windows=9, errors=9, levels=[90.0, 80.0], widths=[[[1.0]], [[2.0]]])
    with pytest.raises(ValidationError, match="non-negative"):
        Intervals(windows=9, errors=9, levels=[80.0], widths=[[[float("nan")]]])


def _panel(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Windows of two series alike in their spread (1 a step) but not in how well they forecast:
    "quiet" misses by about half a spread, "noisy" by about five."""
    ids = ["quiet", "noisy"] * (n // 2)
    x = np.tile(np.arange(8, dtype=np.float64)[None, :, None], (n, 1, 1))
    size = np.where(np.asarray(ids) == "quiet", 0.5, 5.0)[:, None, None]
    y = size * rng.normal(size=(n, 4, 1))
    return x, y, np.zeros_like(y), ids


def test_a_panel_gives_each_series_its_own_width() -> None:
    """One pooled calibration gives the quiet series the range of the noisy one (over-covering
    it, under-covering the other); with the windows' series ids each covers its nominal level."""
    rng = np.random.default_rng(3)
    x, y, f, ids = _panel(2000, rng)
    cal = intervals.calibrate(x, y, f, series=ids)
    assert sorted(cal.series) == ["noisy", "quiet"] and cal.series_widths
    assert cal.series["noisy"][0] / cal.series["quiet"][0] == pytest.approx(10, rel=0.1)
    x, y, f, ids = _panel(4000, rng)
    quiet = np.asarray(ids) == "quiet"
    factors = intervals.series_factors(cal, ids)
    assert factors is not None and factors.shape == (4000, 1)
    for level in (80, 95):
        ((lower, upper),) = intervals.bounds(cal, x, f, [level], factors=factors)
        ((plo, pup),) = intervals.bounds(cal, x, f, [level])
        for rows in (quiet, ~quiet):
            own = float(((lower <= y) & (y <= upper))[rows].mean()) * 100
            pooled = float(((plo <= y) & (y <= pup))[rows].mean()) * 100
            assert abs(own - level) < 2.5, (level, own)
            assert abs(pooled - level) > 4, (level, pooled)  # what the series' own widths fix


def test_a_series_with_few_windows_is_shrunk_towards_the_panel() -> None:
    rng = np.random.default_rng(4)
    x, y, f, ids = _panel(400, rng)
    y[-1] = 40.0  # one window of a third series, missing by 40 spreads a step
    ids[-1] = "rare"
    cal = intervals.calibrate(x, y, f, series=ids)
    raw = 40 / np.abs(y[:-1]).mean()  # its own mean error over the panel's
    assert 1 < cal.series["rare"][0] < raw / 3  # one window is worth 1 / (1 + SHRINK) of its error
    # an unknown id, or none, gets the pooled widths; no known id: no factors at all
    factors = intervals.series_factors(cal, ["quiet", "elsewhere", None])
    assert factors is not None and np.isnan(factors[1:]).all() and factors[0, 0] == cal.series["quiet"][0]
    assert intervals.series_factors(cal, ["elsewhere", None]) is None


def test_one_series_has_no_factors() -> None:
    x, y, f, _ = _panel(40, np.random.default_rng(5))
    cal = intervals.calibrate(x, y, f, series=["only"] * 40)
    assert cal.series == {} and cal.series_widths == []
    assert intervals.series_factors(cal, ["only"]) is None


def test_the_manifest_refuses_series_widths_that_do_not_fit() -> None:
    base = CALIBRATION.model_dump()
    own = [[[2.0], [2.0], [2.0]], [[4.0], [4.0], [4.0]]]
    with pytest.raises(ValidationError, match="go together"):
        Intervals.model_validate(base | {"series": {"a": [1.0]}})
    with pytest.raises(ValidationError, match="shape of widths"):
        Intervals.model_validate(base | {"series": {"a": [1.0]}, "series_widths": own[:1]})
    for factor in ([0.0], [float("inf")], [1.0, 2.0]):
        with pytest.raises(ValidationError, match="finite positive"):
            Intervals.model_validate(base | {"series": {"a": factor}, "series_widths": own})


# --- /v1 -------------------------------------------------------------------------------------------


def test_v1_serves_a_known_series_its_own_widths(client: FlaskClient) -> None:
    """The panel's series_widths are 2 spreads at 80 % (the pooled ones 1, 2, 3); quiet's factor
    0.5, noisy's 3; the windows move by 1 a step and the stub forecasts last value + step."""
    series = [{"id": key, "values": SIX} for key in ("quiet", "noisy", "stranger")] + [{"values": SIX}]
    r = client.post("/v1/models/panel/forecast", json={"series": series, "levels": [80]})
    assert r.status_code == 200, r.get_json()
    reach = [np.subtract(a["intervals"]["80"]["upper"], a["mean"]) for a in r.get_json()["forecasts"]]
    np.testing.assert_allclose(reach[0], [1, 1, 1])  # 2 x 0.5
    np.testing.assert_allclose(reach[1], [6, 6, 6])  # 2 x 3
    np.testing.assert_allclose(reach[2], [1, 2, 3])  # not one of the panel's: the pooled widths
    np.testing.assert_allclose(reach[3], [1, 2, 3])
    assert client.get("/v1/models/panel").get_json()["intervals"]["series"] == 2


def test_v1_serves_the_levels_asked_for(client: FlaskClient) -> None:
    r = forecast(client, "bands", SIX, levels=[80, 95, 90, 40])
    assert r.status_code == 200, r.get_json()
    (answer,) = r.get_json()["forecasts"]
    assert answer["mean"] == [7, 8, 9]
    bands = answer["intervals"]
    assert list(bands) == ["80", "95", "90", "40"]  # as asked
    assert bands["80"] == {"lower": [6, 6, 6], "upper": [8, 10, 12]}
    assert bands["95"] == {"lower": [5, 4, 3], "upper": [9, 12, 15]}
    np.testing.assert_allclose(bands["90"]["upper"], [7 + 5 / 3, 8 + 10 / 3, 9 + 5], rtol=1e-6)
    np.testing.assert_allclose(bands["40"]["lower"], [6.5, 7, 7.5], rtol=1e-6)
    # a shorter horizon cuts the intervals too; no levels, no intervals
    short = forecast(client, "bands", SIX, levels=[80], horizon=2).get_json()["forecasts"][0]
    assert short["intervals"]["80"] == {"lower": [6, 6], "upper": [8, 10]}
    assert "intervals" not in forecast(client, "bands", SIX).get_json()["forecasts"][0]


def test_v1_intervals_of_a_multi_target_model_are_rows(client: FlaskClient) -> None:
    r = forecast(client, "multi", [[1, 10], [2, 20], [3, 30], [4, 40]], levels=[90])
    (answer,) = r.get_json()["forecasts"]
    assert answer["mean"] == [[5, 41], [6, 42]]
    # spreads 1 and 10; widths 2 and 20 spreads at 90 %
    assert answer["intervals"]["90"] == {"lower": [[3, -159], [4, -158]], "upper": [[7, 241], [8, 242]]}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("bands", {"series": [{"values": SIX}]}),
        (
            "bands",
            {"series": [{"id": "a", "values": SIX, "start": "2020-01-01"}, {"values": SIX}], "horizon": 2},
        ),
        ("bands", {"series": [{"values": [v / 3 for v in SIX]}], "levels": [92.5, 80, 12.5]}),
        ("multi", {"series": [{"values": [[1, 10], [2, 20], [3, 30], [4.5, 40]]}], "levels": [90]}),
        ("positive", {"series": [{"values": [9, 6, 3, 0.5, 0.2, 0.1]}], "levels": [95]}),
    ],
)
def test_v1_answers_the_bytes_its_response_model_would_write(
    client: FlaskClient, model: str, body: dict[str, Any]
) -> None:
    """The forecast answer is written by orjson, not by ForecastResponse: the same bytes anyway,
    so the OpenAPI document describes it exactly (fields, order, unset fields left out, numbers)."""
    r = client.post(f"/v1/models/{model}/forecast", json=body)
    assert r.status_code == 200, r.get_json()
    parsed = ForecastResponse.model_validate_json(r.data)
    assert parsed.model_dump_json(exclude_unset=True).encode() == r.data


def test_v1_clips_lower_bounds_of_a_positive_model_at_zero(client: FlaskClient) -> None:
    bands = forecast(client, "positive", [9, 6, 3, 0.5, 0.2, 0.1], levels=[95]).get_json()
    lower = bands["forecasts"][0]["intervals"]["95"]["lower"]
    assert min(lower) == 0 and all(v >= 0 for v in lower)


@pytest.mark.parametrize(
    ("model", "levels", "loc", "words"),
    [
        (
            "bands",
            [80, 99],
            ["levels", 1],
            "above 95, the highest level its 57 calibration errors (19 windows x 3",
        ),
        ("bands", [80, 80.0], ["levels", 1], "asked twice"),
        ("bands", [100], ["levels", 0], "less than 100"),
        ("bands", [0], ["levels", 0], "greater than 0"),
        ("bands", [], ["levels"], "at least 1"),
        ("bands", ["80"], ["levels", 0], "valid number"),
        ("plain", [80], ["levels"], "no interval calibration"),
    ],
)
def test_v1_refuses_levels_it_cannot_serve(
    client: FlaskClient, model: str, levels: list[Any], loc: list[Any], words: str
) -> None:
    r = forecast(client, model, SIX, levels=levels)
    assert r.status_code == 422
    details = r.get_json()["error"]["details"]
    assert any(d["loc"] == loc and words in d["msg"] for d in details), details


def test_the_model_description_says_which_levels_it_serves(client: FlaskClient) -> None:
    info = client.get("/v1/models/bands").get_json()
    assert info["intervals"] == {
        "method": "split-conformal",
        "scale": "mean-abs-change",
        "windows": 19,
        "errors": 57,
        "max_level": 95.0,
        "levels": None,  # any level up to max_level (a quantile head lists its own)
        "series": 0,  # no panel's series with widths of their own
    }
    assert client.get("/v1/models/plain").get_json().get("intervals") is None


# --- /v2 -------------------------------------------------------------------------------------------


def infer(client: FlaskClient, model: str, outputs: list[dict[str, Any]] | None = None) -> Any:
    body: dict[str, Any] = {"inputs": [{"name": "x", "shape": [1, 6, 1], "datatype": "FP32", "data": SIX}]}
    if outputs is not None:
        body["outputs"] = outputs
    return client.post(f"/v2/models/{model}/infer", json=body)


def test_v2_lists_and_serves_the_bounds_as_named_outputs(client: FlaskClient) -> None:
    meta = client.get("/v2/models/bands").get_json()
    assert [o["name"] for o in meta["outputs"]] == [
        "y",
        "y_lower_80",
        "y_upper_80",
        "y_lower_95",
        "y_upper_95",
    ]
    assert {tuple(o["shape"]) for o in meta["outputs"]} == {(-1, 3, 1)}
    every = {o["name"]: o["data"] for o in infer(client, "bands").get_json()["outputs"]}  # none asked: all
    assert every == {
        "y": [7, 8, 9],
        "y_lower_80": [6, 6, 6],
        "y_upper_80": [8, 10, 12],
        "y_lower_95": [5, 4, 3],
        "y_upper_95": [9, 12, 15],
    }
    asked = infer(client, "bands", [{"name": "y_upper_90"}, {"name": "y"}]).get_json()["outputs"]
    assert [o["name"] for o in asked] == ["y_upper_90", "y"]
    np.testing.assert_allclose(asked[0]["data"], [7 + 5 / 3, 8 + 10 / 3, 14], rtol=1e-6)
    plain = client.get("/v2/models/plain").get_json()
    assert [o["name"] for o in plain["outputs"]] == ["y"]


def test_v2_bounds_in_binary(client: FlaskClient) -> None:
    outputs = [{"name": n, "parameters": {"binary_data": True}} for n in ("y", "y_lower_80")]
    r = infer(client, "bands", outputs)
    head_length = int(r.headers["Inference-Header-Content-Length"])
    head, tail = r.data[:head_length], r.data[head_length:]
    sizes = [o["parameters"]["binary_data_size"] for o in orjson.loads(head)["outputs"]]
    assert sizes == [12, 12]
    np.testing.assert_array_equal(np.frombuffer(tail, dtype="<f4"), [7, 8, 9, 6, 6, 6])


@pytest.mark.parametrize(
    ("model", "name", "words"),
    [
        ("bands", "y_upper_99", "outside (0, 95], the levels its 57 calibration errors support"),
        ("bands", "y_middle_80", "unknown output"),
        ("bands", "z", "unknown output"),
        ("plain", "y_lower_80", "no interval calibration"),
    ],
)
def test_v2_refuses_bounds_it_cannot_serve(client: FlaskClient, model: str, name: str, words: str) -> None:
    r = infer(client, model, [{"name": name}])
    assert r.status_code == 400 and words in r.get_json()["error"], r.get_json()


def test_v2_refuses_an_output_named_twice(client: FlaskClient) -> None:
    r = infer(client, "bands", [{"name": "y"}, {"name": "y"}])
    assert r.status_code == 400 and "twice" in r.get_json()["error"]


def test_openapi_documents_levels_and_intervals(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    text = str(spec)
    assert "Interval" in spec["components"]["schemas"] and "max_level" in text


def test_a_panel_calibrates_on_each_series_newest_windows() -> None:
    """Old windows that missed by 100 spreads make no width once each series has RECENT newer ones;
    one series keeps its whole history."""
    rng = np.random.default_rng(6)
    n = 4 * (intervals.RECENT + 10)
    x, y, f, ids = _panel(n, rng)
    origins = np.repeat(np.arange(n // 2), 2)  # two series, windows in time order
    old = origins < 10
    y[old] = 100.0
    cal = intervals.calibrate(x, y, f, series=ids, origins=origins)
    assert cal.windows == 2 * intervals.RECENT
    assert max(max(row) for row in cal.widths[cal.levels.index(95.0)]) < 20
    assert intervals.calibrate(x, y, f, series=["one"] * n, origins=origins).windows == n
    keep = intervals.recent(np.array(["a", "b", "a", "a", "b"], dtype=object), np.array([1, 5, 3, 2, 4]), 2)
    assert keep.tolist() == [False, True, True, True, True]
