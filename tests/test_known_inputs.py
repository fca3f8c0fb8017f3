"""Inputs known in advance (issue 15): calendar features, future columns, holidays; the trainer and
the service build the same model input, and every way a request can get them wrong is a 422."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service import known as service_known
from service.app import create_app
from service.bundle import calendar
from service.bundle.manifest import Known, NetworkSpec
from service.bundle.timeindex import parse_frequency
from service.settings import Settings
from training import known
from training.config import Config, DataConfig
from training.data import DataError, load_dataset
from training.models import model_spec
from training.pipeline import publish_run, train_run
from training.windows import make_windows

HORIZON, LENGTH = 7, 14
NAN = float("nan")
W, T = [1] * HORIZON, [20.0] * HORIZON  # good future values
REGRESSORS = ["WorkDay", "Temperature"]


def daily_csv(tmp_path: Path, days: int = 240, seed: int = 0) -> Path:
    """Daily demand that drops on non-working days and rises with the temperature."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2014-01-01", periods=days, freq="D")
    holidays = calendar.features(list(stamps.to_pydatetime()), ["holiday"], "AU-VIC")[:, 0]
    workday = ((stamps.day_of_week < 5) & (holidays == 0)).astype(int)
    temperature = 20 + 8 * np.sin(np.arange(days) / 9) + rng.normal(0, 2, days)
    demand = 200 + 25 * workday + 1.5 * temperature + rng.normal(0, 2, days)
    frame = pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%d"),
            "Demand": demand,
            "WorkDay": workday,
            "Temperature": temperature,
        }
    )
    path = tmp_path / "daily.csv"
    frame.to_csv(path, index=False)
    return path


def config(path: Path, tmp_path: Path, **data) -> Config:
    return Config.model_validate(
        {
            "data": {"path": str(path), "targets": ["Demand"], **data},
            "split": {"test": HORIZON, "val": 2 * HORIZON},
            "window": {"length": LENGTH, "horizon": HORIZON},
            "model": {"cell": "lstm", "head": "direct", "hidden": 8, "base_lag": 7},
            "train": {"epochs": 2, "batch_size": 32},
            "machine": {"device": "cpu", "progress": False},
            "export": {"name": "demand", "model_dir": str(tmp_path / "models")},
        }
    )


FULL = {
    "future": ["WorkDay", "Temperature"],
    "calendar": ["dayofweek", "holiday"],
    "holidays": "AU-VIC",
}


# --- calendar features ---------------------------------------------------------------------------


def test_calendar_features_of_dates():
    stamps = [datetime(2014, 12, 22), datetime(2014, 12, 25, 18, 30)]  # a Monday; Christmas, 18:30
    got = calendar.features(stamps, ["dayofweek", "holiday", "hour", "month"], "AU-VIC")
    assert calendar.columns(["dayofweek", "holiday", "hour", "month"]) == [
        "dayofweek_sin", "dayofweek_cos", "holiday", "hour_sin", "hour_cos", "month_sin", "month_cos",
    ]  # fmt: skip
    np.testing.assert_allclose(got[0, :3], [0.0, 1.0, 0.0], atol=1e-6)  # Monday: phase 0; no holiday
    thursday = 3 / 7 * 2 * math.pi
    np.testing.assert_allclose(got[1, :3], [math.sin(thursday), math.cos(thursday), 1.0], atol=1e-6)
    evening = 18.5 / 24 * 2 * math.pi
    np.testing.assert_allclose(got[1, 3:5], [math.sin(evening), math.cos(evening)], atol=1e-6)
    np.testing.assert_allclose(
        got[1, 5:], [math.sin(11 / 12 * 2 * math.pi), math.cos(11 / 12 * 2 * math.pi)], atol=1e-6
    )


def test_a_specs_column_lists_are_computed_once_and_again_for_a_changed_copy():
    """The lists are cached on the frozen spec (the service reads them per request); a copy with
    other fields must not keep the original's."""
    network = NetworkSpec(cell="gru", hidden=4, head="direct")
    spec = model_spec(network, ["y", "WorkDay"], ["y"], 14, 7, "D", known=Known(future=["WorkDay"]))
    assert spec.lead is spec.lead and spec.sent == ["y", "WorkDay"] and spec.lead == ["WorkDay+7"]
    other = model_spec(
        network, ["y", "WorkDay"], ["y"], 14, 7, "D", known=Known(future=["WorkDay"], calendar=["dayofweek"])
    )
    copied = spec.model_copy(update={"known": other.known, "features": other.features})
    assert copied.lead == other.lead == ["WorkDay+7", "dayofweek_sin+7", "dayofweek_cos+7"]
    assert copied.sent == ["y", "WorkDay"] and copied.known is not None
    assert copied.known.columns == ["WorkDay", "dayofweek_sin", "dayofweek_cos"]
    assert spec.lead == ["WorkDay+7"]  # the original keeps its own


@pytest.mark.parametrize(
    ("alias", "country", "expected"),
    [
        ("30min", "AU", ["hour", "dayofweek", "holiday"]),
        ("h", None, ["hour", "dayofweek"]),
        ("D", "AU", ["dayofweek", "weekofyear", "holiday"]),
        ("B", None, ["dayofweek", "weekofyear"]),
        ("W-SUN", "AU", ["weekofyear"]),
        ("MS", "AU", ["month"]),
        ("QS", None, ["month"]),
        ("YS", None, []),
    ],
)
def test_auto_calendar_takes_what_changes_at_the_frequency(alias, country, expected):
    freq = parse_frequency(alias)
    assert freq is not None
    assert calendar.auto_features(freq, country) == expected


def test_an_unknown_holiday_country_is_named():
    with pytest.raises(ValueError, match="'XX'"):
        calendar.check_country("XX")


# --- the trainer's side --------------------------------------------------------------------------


def test_the_dataset_carries_the_known_inputs_and_windows_read_them_a_horizon_ahead(tmp_path):
    cfg = config(daily_csv(tmp_path), tmp_path, **FULL)
    ds = load_dataset(cfg.data)
    assert ds.sent == ["Demand", "WorkDay", "Temperature"]
    assert ds.inputs(HORIZON) == [
        "Demand", "WorkDay", "Temperature", "dayofweek_sin", "dayofweek_cos", "holiday",
        "WorkDay+7", "Temperature+7", "dayofweek_sin+7", "dayofweek_cos+7", "holiday+7",
    ]  # fmt: skip
    windows = make_windows(ds, cfg.split, cfg.window)["test"]
    values = ds.series[0].values
    t = int(windows.origin[0])
    x = windows.x[0]
    np.testing.assert_array_equal(x[:, :6], values[t - LENGTH : t, :6])  # history and its calendar
    # the known inputs ahead: the last HORIZON rows hold the forecast steps' values
    np.testing.assert_array_equal(x[-HORIZON:, 6:8], values[t : t + HORIZON, 1:3])
    np.testing.assert_array_equal(x[:, 6:], values[t - LENGTH + HORIZON : t + HORIZON, 6:])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"covariates": ["WorkDay"], "future": ["WorkDay"]}, "both data.covariates and data.future"),
        ({"calendar": ["holiday"]}, "needs data.holidays"),
        ({"calendar": ["dayofweek"], "holidays": "AU"}, "needs data.holidays"),
    ],
)
def test_known_input_configs_that_cannot_work_are_refused(tmp_path, data, reason):
    with pytest.raises(ValueError, match=reason):
        config(tmp_path / "x.csv", tmp_path, **data)


def test_a_generative_head_cannot_read_inputs_known_in_advance(tmp_path):
    cfg = config(tmp_path / "x.csv", tmp_path).model_dump()
    cfg["data"]["future"] = ["WorkDay"]
    cfg["model"] = {"head": "shift"}
    with pytest.raises(ValueError, match="direct or mlp head"):
        Config.model_validate(cfg)


def test_calendar_features_need_dated_data(tmp_path):
    path = tmp_path / "steps.csv"
    pd.DataFrame({"t": range(60), "y": np.arange(60.0)}).to_csv(path, index=False)
    with pytest.raises(DataError, match="needs dated data"):
        load_dataset(DataConfig(path=path, timestamp="t", calendar=["dayofweek"]))


def test_a_missing_future_column_is_named(tmp_path):
    with pytest.raises(DataError, match="future column"):
        load_dataset(DataConfig(path=daily_csv(tmp_path), targets=["Demand"], future=["Promotion"]))


def test_the_ridge_recovers_a_known_effect_and_the_graph_computes_it_as_numpy_does(tmp_path):
    """training.known: the base's error is a linear effect of how far the known input is from the
    base's forecast of it; the fit finds the effect, and Forecaster.known_effect (the graph) adds
    exactly what the numpy path adds."""
    cfg = config(daily_csv(tmp_path), tmp_path, future=["WorkDay", "Temperature"])
    run = train_run(cfg)
    model, windows = run.model, run.windows["train"]
    spec = model.spec
    matrix = model.base_matrix.numpy().astype(np.float64)
    mean, std = model.scaler.mean.flatten().numpy(), model.scaler.std.flatten().numpy()
    d = known.deltas(windows.x, spec, matrix, mean, std)
    true = np.random.default_rng(1).normal(size=(d.shape[2], 1))
    effect = np.einsum("nhk,kt->nht", d, true)
    weight = known.fit(d, effect, penalty=1e-6)
    # a 0/1 flag's square is the flag again (its deltas coincide), so the weights are not unique:
    # the effect they make is
    np.testing.assert_allclose(np.einsum("nhk,kt->nht", d, weight), effect, atol=1e-3 * np.abs(effect).max())
    np.testing.assert_allclose(weight[[1, 3]], true[[1, 3]], atol=1e-3)  # the temperature's are
    with torch.no_grad():
        model.known_weight.copy_(torch.from_numpy(weight))
        xn, _, scale = model.scaler(torch.from_numpy(windows.x))
        graph = (model.known_effect(xn) * scale[..., :1]).numpy()
    numpy = known.KnownEffect(spec, mean, std, weight, 0.0).part(windows.x, matrix)
    np.testing.assert_allclose(graph, numpy, rtol=1e-3, atol=1e-3 * np.abs(numpy).max())


# --- the service's side --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A model trained with future columns and a calendar, published, and a client of the service."""
    tmp_path = tmp_path_factory.mktemp("known")
    path = daily_csv(tmp_path)
    run = train_run(config(path, tmp_path, **FULL))
    publish_run(run, tmp_path / "models")
    app = create_app(Settings(model_dir=tmp_path / "models"))
    frame = pd.read_csv(path)
    return run, app.test_client(), frame


def body(frame: pd.DataFrame, horizon: int = HORIZON, **series) -> dict:
    history, after = frame.iloc[-HORIZON - LENGTH : -HORIZON], frame.iloc[-HORIZON:]
    one = {
        "values": history[["Demand", "WorkDay", "Temperature"]].to_numpy().tolist(),
        "start": history["timestamp"].iloc[0],
        "future": {c: after[c].iloc[:horizon].tolist() for c in ("WorkDay", "Temperature")},
    }
    return {"series": [{**one, **series}], "horizon": horizon}


def test_the_service_forecasts_what_the_trained_model_forecasts_for_the_same_window(served):
    """The service builds the graph's input from values, future and the dates exactly as the
    trainer cut its windows: the answer is the model's forecast of the last test window."""
    run, client, frame = served
    answer = client.post("/v1/models/demand/forecast", json=body(frame))
    assert answer.status_code == 200, answer.get_json()
    got = np.asarray(answer.get_json()["forecasts"][0]["mean"])
    with torch.no_grad():
        want = run.model(torch.from_numpy(run.windows["test"].x[-1:])).numpy()[0, :, 0]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # the direct head reads the known inputs of steps up to its own: fewer steps, fewer values
    short = client.post("/v1/models/demand/forecast", json=body(frame, horizon=3))
    assert short.status_code == 200, short.get_json()
    np.testing.assert_allclose(short.get_json()["forecasts"][0]["mean"], want[:3], rtol=1e-4)
    # dated by timestamps instead of start: the same
    stamps = frame["timestamp"].iloc[-HORIZON - LENGTH : -HORIZON].tolist()
    dated = body(frame)
    del dated["series"][0]["start"]
    dated["series"][0]["timestamps"] = stamps
    again = client.post("/v1/models/demand/forecast", json=dated)
    np.testing.assert_allclose(again.get_json()["forecasts"][0]["mean"], want, rtol=1e-4)


def test_the_future_inputs_move_the_forecast(served):
    _, client, frame = served
    base = client.post("/v1/models/demand/forecast", json=body(frame)).get_json()["forecasts"][0]["mean"]
    changed = body(frame)
    changed["series"][0]["future"]["WorkDay"] = [0] * HORIZON
    other = client.post("/v1/models/demand/forecast", json=changed).get_json()["forecasts"][0]["mean"]
    assert np.abs(np.subtract(base, other)).max() > 0.5


def test_the_model_description_says_what_a_request_needs(served):
    _, client, _ = served
    info = client.get("/v1/models/demand").get_json()
    assert info["known"] == {
        "future": ["WorkDay", "Temperature"],
        "calendar": ["dayofweek", "holiday"],
        "holidays": "AU-VIC",
        "needs_dates": True,
        "needs_full_horizon": False,
        "sent": ["Demand", "WorkDay", "Temperature"],
    }


@pytest.mark.parametrize(
    ("change", "loc", "message"),
    [
        ({"future": None}, ["future"], "required"),
        ({"future": {"WorkDay": W}}, ["future"], "missing Temperature"),
        ({"future": {"WorkDay": [1] * 3, "Temperature": T}}, ["future", "WorkDay"], "3 values"),
        ({"future": {"WorkDay": W, "Temperature": [NAN] * HORIZON}}, ["future", "Temperature"], "finite"),
        ({"future": {"WorkDay": W, "Temperature": T, "P": [1]}}, ["future", "P"], "not a"),
        ({"future": {"WorkDay": "1111111", "Temperature": T}}, ["future", "WorkDay"], "a list"),
        ({"future": [1, 2]}, ["future"], "expected an object"),
        ({"start": None}, ["start"], "date the series"),
        ({"values": [[200.0, 1]] * LENGTH}, ["values"], "Demand, WorkDay, Temperature"),
    ],
)  # fmt: skip
def test_bad_known_inputs_are_422s_naming_the_field(served, change, loc, message):
    _, client, frame = served
    request = body(frame)
    request["series"][0].update(change)
    request["series"][0] = {k: v for k, v in request["series"][0].items() if v is not None}
    answer = client.post("/v1/models/demand/forecast", json=request)
    assert answer.status_code == 422, answer.get_json()
    details = answer.get_json()["error"]["details"]
    assert any(d["loc"] == ["series", 0, *loc] and message in d["msg"] for d in details), details


def test_future_values_for_a_model_without_them_are_refused(tmp_path):
    path = daily_csv(tmp_path)
    run = train_run(config(path, tmp_path))
    publish_run(run, tmp_path / "models")
    client = create_app(Settings(model_dir=tmp_path / "models")).test_client()
    frame = pd.read_csv(path)
    request = {
        "series": [{"values": frame["Demand"].iloc[-LENGTH:].tolist(), "future": {"WorkDay": [1] * 7}}]
    }
    answer = client.post("/v1/models/demand/forecast", json=request)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["details"][0]["loc"] == ["series", 0, "future"]


# --- the Open Inference Protocol (/v2) -----------------------------------------------------------


@pytest.fixture(scope="module")
def served_future(tmp_path_factory):
    """A model with future columns and no calendar: /v2 takes them as a second input."""
    tmp_path = tmp_path_factory.mktemp("future")
    path = daily_csv(tmp_path)
    run = train_run(config(path, tmp_path, future=["WorkDay", "Temperature"]))
    publish_run(run, tmp_path / "models")
    return run, create_app(Settings(model_dir=tmp_path / "models")).test_client(), pd.read_csv(path)


def test_v2_takes_the_future_values_as_a_second_input(served_future):
    run, client, frame = served_future
    meta = client.get("/v2/models/demand").get_json()
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [
        ("x", [-1, -1, 3]),
        ("future", [-1, HORIZON, 2]),
    ]
    history = frame[["Demand", "WorkDay", "Temperature"]].iloc[-HORIZON - LENGTH : -HORIZON].to_numpy()
    future = frame[["WorkDay", "Temperature"]].iloc[-HORIZON:].to_numpy()
    request = {
        "inputs": [
            {"name": "x", "shape": [1, LENGTH, 3], "datatype": "FP32", "data": history.ravel().tolist()},
            {"name": "future", "shape": [1, HORIZON, 2], "datatype": "FP32", "data": future.ravel().tolist()},
        ]
    }
    answer = client.post("/v2/models/demand/infer", json=request)
    assert answer.status_code == 200, answer.get_json()
    with torch.no_grad():
        want = run.model(torch.from_numpy(run.windows["test"].x[-1:])).numpy().ravel()
    np.testing.assert_allclose(answer.get_json()["outputs"][0]["data"], want, rtol=1e-4)
    # the same through /v1
    v1 = {
        "series": [
            {"values": history.tolist(), "future": {c: frame[c].iloc[-HORIZON:].tolist() for c in REGRESSORS}}
        ]
    }
    got = client.post("/v1/models/demand/forecast", json=v1).get_json()["forecasts"][0]["mean"]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # a missing or misshapen future input is a 400 naming it
    alone = {"inputs": request["inputs"][:1]}
    assert "['x', 'future']" in client.post("/v2/models/demand/infer", json=alone).get_json()["error"]
    short = {
        "inputs": [request["inputs"][0], {**request["inputs"][1], "shape": [1, 3, 2], "data": [1.0] * 6}]
    }
    bad = client.post("/v2/models/demand/infer", json=short)
    assert bad.status_code == 400 and "'future': shape must be [batch, 7, 2]" in bad.get_json()["error"]


def test_v2_takes_a_calendar_models_own_graph_input(served):
    run, client, _ = served
    meta = client.get("/v2/models/demand").get_json()
    features = len(run.model.spec.features)
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [("x", [-1, -1, features])]
    x = run.windows["test"].x[-1:]
    request = {
        "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    answer = client.post("/v2/models/demand/infer", json=request)
    assert answer.status_code == 200, answer.get_json()
    with torch.no_grad():
        want = run.model(torch.from_numpy(x)).numpy().ravel()
    np.testing.assert_allclose(answer.get_json()["outputs"][0]["data"], want, rtol=1e-4)


# --- the batch path for future values ------------------------------------------------------------

_cell = st.one_of(
    st.integers(-5, 5),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), 1e39, True, None, "1"]),
)
_column = st.one_of(st.lists(_cell, min_size=1, max_size=5), _cell)
_future = st.one_of(
    st.none(),
    st.fixed_dictionaries({"WorkDay": _column, "Temperature": _column}),
    st.dictionaries(st.sampled_from(["WorkDay", "Temperature", "Promo"]), _column, max_size=3),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(futures=st.lists(_future, min_size=1, max_size=4), horizon=st.integers(1, 4))
def test_the_batch_path_for_future_values_accepts_only_what_each_series_would(futures, horizon):
    """known.future_batch answers only when known.future_rows accepts every series, with its rows."""
    spec = model_spec(
        NetworkSpec(head="direct", base_lag=1), ["y", "WorkDay", "Temperature"], ["y"], 4, 4, "D",
        known=Known(future=["WorkDay", "Temperature"]),
    )  # fmt: skip
    fast = service_known.future_batch(futures, spec, horizon)
    if fast is None:
        return
    slow = np.stack([service_known.future_rows(f, spec, horizon) for f in futures])
    np.testing.assert_array_equal(fast, slow)


def test_a_known_input_that_does_not_move_on_the_fitting_windows_gets_no_weight():
    """A holiday flag that is 0 in every recent window leaves a delta of rounding noise: it must
    get weight 0, not the 1e14 that dividing by its size would give (which broke export parity)."""
    rng = np.random.default_rng(0)
    moving = rng.normal(size=(200, 7, 1))
    noise = rng.normal(scale=1e-17, size=(200, 7, 1))
    d = np.concatenate([moving, noise], axis=2)
    error = 0.5 * moving + rng.normal(scale=0.01, size=(200, 7, 1))
    weight = known.fit(d, error, 0.01)
    assert weight[1, 0] == 0.0
    assert weight[0, 0] == pytest.approx(0.5, abs=0.02)  # the one that moves is still read
