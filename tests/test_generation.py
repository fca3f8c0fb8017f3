"""Sequence-shift training (the ``shift`` head, many-to-many) and generation from a short context
(``window.min_history``, one-to-many): the model, its training pair, its export and how ``/v1``
serves histories shorter than the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from service.app import create_app
from service.bundle import store
from service.bundle.manifest import InputWindow, ModelSpec, NetworkSpec
from service.bundle.predictor import OnnxPredictor
from service.settings import Settings
from training.config import Config
from training.models import build_model, model_spec
from training.pipeline import publish_run, train_run
from training.train import LOSSES, _scaled_loss


def _shift(cell: str = "lstm", targets: int = 1, length: int = 12, horizon: int = 4, **window: Any) -> Any:
    names = [f"t{i}" for i in range(targets)]
    spec = model_spec(NetworkSpec(cell=cell, head="shift", hidden=8), names, names, length, horizon, **window)
    return build_model(spec)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_an_untrained_shift_model_is_the_naive_forecast(cell: str) -> None:
    """Each step is the last value plus a learned change that starts at zero."""
    model = _shift(cell, targets=2).eval()
    x = torch.randn(5, 12, 2) * 30 + 100
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, x[:, -1:].expand(5, 4, 2), rtol=1e-5, atol=1e-4)


def test_the_training_target_is_the_sequence_shifted_by_one() -> None:
    torch.manual_seed(0)
    model = _shift()
    for p in model.parameters():  # away from the naive start
        torch.nn.init.normal_(p, std=0.3)
        p.requires_grad_(False)
    x, y = torch.randn(3, 12, 1) * 5 + 50, torch.randn(3, 4, 1) * 5 + 50
    predicted, actual = model.teacher_scaled(x, y)
    assert predicted.shape == actual.shape == (3, 15, 1)  # a prediction for every next step
    xn, loc, scale = model.scaler(x)
    whole = torch.cat([xn, (y - loc) / scale], dim=1)
    torch.testing.assert_close(actual, whole[:, 1:])
    # step t's prediction reads steps 0..t only: changing a later step leaves it as it was
    later = y.clone()
    later[:, -1] += 100
    torch.testing.assert_close(model.teacher_scaled(x, later)[0], predicted)
    # training sees that pair; validation the forecast it serves, rolled on its own predictions
    loss = LOSSES["mse"]
    assert float(_scaled_loss(model, loss, x, y, teacher=True)) == pytest.approx(
        float(loss(predicted, actual)), rel=1e-6
    )
    rolled, loc, scale = model.forward_scaled(x)
    assert float(_scaled_loss(model, loss, x, y)) == pytest.approx(
        float(loss(rolled, (y - loc) / scale)), rel=1e-6
    )


def test_what_the_shift_head_and_short_histories_cannot_do_is_refused() -> None:
    with pytest.raises(ValidationError, match="forecasts no covariates"):
        model_spec(NetworkSpec(head="shift"), ["load", "temp"], ["load"], 12, 4)
    with pytest.raises(ValidationError, match="not shift"):
        NetworkSpec(head="shift", base_lag=12)
    with pytest.raises(ValidationError, match="quantiles need the direct or mlp head"):
        NetworkSpec(head="shift", quantiles=[80])
    with pytest.raises(ValidationError, match="needs a head that generates: shift or seq2seq"):
        ModelSpec(
            network=NetworkSpec(head="direct"),
            input_window=InputWindow(length=12, min_length=3),
            horizon=4,
            features=["v"],
            targets=["v"],
        )
    base = {"data": {"path": "x.csv"}, "window": {"length": 12, "horizon": 4, "min_history": 3}}
    with pytest.raises(ValidationError, match="window.min_history needs a \\[model\\]"):
        Config.model_validate(base)  # the automatic recipe does not generate
    with pytest.raises(ValidationError, match="must not exceed window.length"):
        Config.model_validate(
            base | {"window": {"length": 12, "min_history": 13}, "model": {"head": "shift"}}
        )
    assert Config.model_validate(base | {"model": {"head": "seq2seq"}}).window.min_history == 3


def _wave_csv(path: Path) -> Path:
    rng = np.random.default_rng(1)
    t = np.arange(360)
    values = 50 + 10 * np.sin(2 * np.pi * t / 12) + 0.05 * t + rng.normal(0, 0.5, len(t))
    stamps = pd.date_range("1990-01-01", periods=len(t), freq="MS")
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d"), "v": values}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def generator(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    tmp = tmp_path_factory.mktemp("generation")
    cfg = Config.model_validate(
        {
            "data": {"path": str(_wave_csv(tmp / "wave.csv")), "timestamp": "timestamp"},
            "split": {"test": 48, "val": 48},
            "window": {"length": 24, "horizon": 6, "min_history": 3},
            "model": {"cell": "gru", "head": "shift", "hidden": 16},
            "train": {"epochs": 40, "patience": 10, "seed": 0, "lr": 0.01},
            "export": {"name": "wave"},
            "machine": {"threads": 1, "progress": False, "device": "cpu"},
        }
    )
    run = train_run(cfg)
    return publish_run(run, tmp / "models"), run


@pytest.mark.slow
def test_a_shift_model_trained_on_short_contexts_learns_and_exports(generator: tuple[Path, Any]) -> None:
    bundle, run = generator
    manifest = store.load_manifest(bundle)
    assert manifest.spec.input_window.min_length == 3 and manifest.spec.network.head == "shift"
    assert manifest.metrics is not None
    model, naive = manifest.metrics.model.mase, manifest.metrics.naive.mase
    assert model is not None and naive is not None
    assert model < 0.5 * naive, (model, naive)  # it learned the wave
    # the served graph agrees with PyTorch at the shortest history too (export checks it)
    x = run.windows["test"].x[:, -3:]
    with torch.no_grad():
        ref = run.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(OnnxPredictor.load(bundle).predict(x), ref, rtol=1e-4, atol=1e-3)


@pytest.mark.slow
def test_v1_forecasts_from_any_history_down_to_the_minimum(generator: tuple[Path, Any]) -> None:
    bundle, run = generator
    client = create_app(Settings(model_dir=bundle.parent.parent, workers=1, threads=1)).test_client()
    info = client.get("/v1/models/wave").get_json()
    assert info["min_history"] == 3 and info["max_horizon"] == 6
    values = run.dataset.series[0].values[:100, 0].tolist()
    lengths = (24, 3, 40, 10, 3)
    alone = []
    for n in lengths:
        r = client.post(
            "/v1/models/wave/forecast", json={"series": [{"values": values[-n:]}], "levels": [80]}
        )
        assert r.status_code == 200, r.get_json()
        alone.append(r.get_json()["forecasts"][0])
    # one request mixing the lengths: each series answered from its own whole history
    body = {"series": [{"values": values[-n:]} for n in lengths], "levels": [80]}
    r = client.post("/v1/models/wave/forecast", json=body)
    assert r.status_code == 200, r.get_json()
    for got, want in zip(r.get_json()["forecasts"], alone, strict=True):
        np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-6)
        np.testing.assert_allclose(
            got["intervals"]["80"]["upper"], want["intervals"]["80"]["upper"], rtol=1e-6
        )
    # a longer history (40 > the window of 24) is cut to the window, a shorter one is used whole
    assert alone[2]["mean"] == alone[0]["mean"] and alone[1]["mean"] != alone[0]["mean"]
    # below the minimum, or beyond the horizon: 422s that name the limit
    r = client.post("/v1/models/wave/forecast", json={"series": [{"values": values[-2:]}]})
    assert r.status_code == 422 and "the model needs at least 3" in r.get_json()["error"]["message"]
    r = client.post("/v1/models/wave/forecast", json={"series": [{"values": values[-5:]}], "horizon": 7})
    assert r.status_code == 422 and "forecasts at most 6" in r.get_json()["error"]["message"]
