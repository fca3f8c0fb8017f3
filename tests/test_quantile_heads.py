"""Quantile heads: a network that learns its interval bounds with the pinball loss
(``network.quantiles``), exported as a second graph output and served by /v1 and /v2."""

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
from service.bundle.manifest import ModelSpec, NetworkSpec
from service.bundle.predictor import OnnxPredictor
from service.settings import Settings
from training.config import Config
from training.models import build_model, model_spec
from training.pipeline import publish_run, train_run
from training.train import pinball, quantile_probabilities

LEVELS = [80.0, 95.0]


def _spec(**network: Any) -> ModelSpec:
    return model_spec(NetworkSpec(**network), ["v"], ["v"], 24, 6)


def test_the_pinball_loss_is_smallest_at_the_quantile() -> None:
    y = torch.arange(1.0, 101.0).reshape(100, 1, 1)  # 1..100
    tau = quantile_probabilities([80.0])  # 0.1 below, 0.9 above
    assert tau.flatten().tolist() == pytest.approx([0.1, 0.9])

    def loss(lower: float, upper: float) -> float:
        bounds = (
            torch.tensor([lower, upper], dtype=torch.float32).reshape(2, 1, 1, 1, 1).expand(2, 1, 100, 1, 1)
        )
        return float(pinball(bounds, y, tau))

    best = min(((lo, up) for lo in range(1, 101) for up in range(1, 101)), key=lambda b: loss(*b))
    assert 10 <= best[0] <= 11 and 90 <= best[1] <= 91  # the 10th and 90th percentiles


def test_learned_bounds_never_cross_whatever_the_weights() -> None:
    torch.manual_seed(0)
    model = build_model(_spec(cell="gru", hidden=8, quantiles=LEVELS))
    for p in model.parameters():  # far from the zero start of a base's correction
        torch.nn.init.normal_(p, std=2.0)
    y, bounds = model.forward_bounds(torch.randn(64, 24, 1) * 5)
    assert bounds.shape == (2, 2, 64, 6, 1)
    lower80, lower95, upper80, upper95 = bounds[0, 0], bounds[0, 1], bounds[1, 0], bounds[1, 1]
    assert bool((lower95 <= lower80).all() and (lower80 <= y).all())
    assert bool((y <= upper80).all() and (upper80 <= upper95).all())
    # the point forecast is the model's forward, unchanged by the quantile outputs
    x = torch.randn(3, 24, 1)
    torch.testing.assert_close(model(x), model.forward_bounds(x)[0])


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"head": "seq2seq", "quantiles": [80]}, "direct or mlp head"),
        ({"quantiles": [95, 80]}, "increasing"),
        ({"quantiles": [80, 80]}, "increasing"),
        ({"quantiles": [100]}, "(0, 100)"),
    ],
)
def test_the_spec_refuses_quantiles_it_cannot_learn(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        NetworkSpec(**options)


def _noisy_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(720)
    values = 20 + 4 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1.0, len(t))
    stamps = pd.date_range("1950-01-01", periods=len(t), freq="MS")
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d"), "v": values}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def quantile_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    tmp = tmp_path_factory.mktemp("quantiles")
    cfg = Config.model_validate(
        {
            "data": {"path": str(_noisy_csv(tmp / "noisy.csv")), "timestamp": "timestamp"},
            "split": {"test": 120, "val": 120},
            "window": {"length": 24, "horizon": 6},
            "model": {"cell": "gru", "head": "direct", "hidden": 16, "quantiles": LEVELS},
            "train": {"epochs": 40, "patience": 10, "seed": 0, "lr": 0.01},
            "export": {"name": "noisy"},
            "machine": {"threads": 1, "progress": False, "device": "cpu"},
        }
    )
    run = train_run(cfg)
    bundle = publish_run(run, tmp / "models")
    return bundle, run


@pytest.mark.slow
def test_a_quantile_head_learns_bounds_that_cover_held_out_points(quantile_bundle: tuple[Path, Any]) -> None:
    bundle, run = quantile_bundle
    manifest = store.load_manifest(bundle)
    cal = manifest.intervals
    assert cal is not None and cal.method == "quantile" and cal.levels == LEVELS and cal.widths == []
    predictor = OnnxPredictor.load(bundle)
    test = run.windows["test"]
    y, bounds = predictor.predict_bounds(test.x)
    np.testing.assert_allclose(y, predictor.predict(test.x))
    # the served graph matches PyTorch on both outputs (export checked it too)
    with torch.no_grad():
        ref = run.model.forward_bounds(torch.from_numpy(test.x))
    np.testing.assert_allclose(bounds, ref[1].numpy(), rtol=1e-4, atol=1e-4)
    inside = [float(((bounds[0, i] <= test.y) & (test.y <= bounds[1, i])).mean() * 100) for i in range(2)]
    # noise of sd 1 around a sine: the 80 % and 95 % bands hold about that share of new points
    assert 65 <= inside[0] <= 92, inside
    assert 85 <= inside[1] <= 100, inside
    assert inside[1] > inside[0]
    page = (bundle / "report" / "index.html").read_text()
    assert "pinball" in page


@pytest.mark.slow
def test_v1_and_v2_serve_the_learned_bounds_and_only_those(quantile_bundle: tuple[Path, Any]) -> None:
    bundle, run = quantile_bundle
    app = create_app(Settings(model_dir=bundle.parent.parent, workers=1, threads=1))
    client = app.test_client()
    x = run.windows["test"].x[:2]
    predictor = OnnxPredictor.load(bundle)
    _, bounds = predictor.predict_bounds(x)
    body = {"series": [{"values": row[:, 0].tolist()} for row in x], "levels": [95, 80]}
    r = client.post("/v1/models/noisy/forecast", json=body)
    assert r.status_code == 200, r.data
    got = r.get_json()["forecasts"]
    for i, forecast in enumerate(got):
        for level, n in (("80", 0), ("95", 1)):
            np.testing.assert_allclose(
                forecast["intervals"][level]["lower"], bounds[0, n, i, :, 0], rtol=1e-6
            )
            np.testing.assert_allclose(
                forecast["intervals"][level]["upper"], bounds[1, n, i, :, 0], rtol=1e-6
            )
    r = client.post("/v1/models/noisy/forecast", json=body | {"levels": [80, 90]})
    assert r.status_code == 422
    detail = r.get_json()["error"]["details"]
    assert detail[0]["loc"] == ["levels", 1] and "learned the levels 80, 95" in detail[0]["msg"]
    info = client.get("/v1/models/noisy").get_json()
    assert info["intervals"]["method"] == "quantile" and info["intervals"]["max_level"] == 95
    meta = client.get("/v2/models/noisy").get_json()
    assert [o["name"] for o in meta["outputs"]] == [
        "y",
        "y_lower_80",
        "y_upper_80",
        "y_lower_95",
        "y_upper_95",
    ]
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    r = client.post("/v2/models/noisy/infer", json={"inputs": [tensor], "outputs": [{"name": "y_upper_95"}]})
    assert r.status_code == 200, r.data
    out = r.get_json()["outputs"][0]
    np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), bounds[1, 1], rtol=1e-6)
    r = client.post("/v2/models/noisy/infer", json={"inputs": [tensor], "outputs": [{"name": "y_upper_90"}]})
    assert r.status_code == 400 and "learned the levels 80, 95" in r.get_json()["error"]


def test_the_base_damping_is_chosen_on_the_point_forecast_alone() -> None:
    from training.train import LOSSES, choose_base_damping, evaluate_loss

    rng = np.random.default_rng(1)
    t = np.arange(400, dtype=np.float32)
    series = 10 + 3 * np.sin(2 * np.pi * t / 12) + np.cumsum(rng.normal(0, 0.3, len(t)))
    windows = np.lib.stride_tricks.sliding_window_view(series.astype(np.float32), 30)  # (n, 24 + 6)
    x = torch.from_numpy(windows[:, :24, None].copy())
    y = torch.from_numpy(windows[:, 24:, None].copy())
    mae = LOSSES["mae"]
    plain = build_model(_spec(cell="gru", hidden=8, base_lag=12, base_damping="auto"))
    learned = build_model(_spec(cell="gru", hidden=8, base_lag=12, base_damping="auto", quantiles=LEVELS))
    # untrained, both are their base: the same point loss, and the bounds add their pinball loss
    point = evaluate_loss(plain, mae, x, y)
    assert evaluate_loss(learned, mae, x, y, bounds=False) == pytest.approx(point, rel=1e-6)
    assert evaluate_loss(learned, mae, x, y) > point
    # so the damping search, which scores the base, scores a quantile model's the same way
    losses: list[float] = []
    for model in (plain, learned):
        choose_base_damping(model, mae, x, y)
        losses.append(evaluate_loss(model, mae, x, y, bounds=False))
    assert plain.spec.network.base_damping == learned.spec.network.base_damping
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
