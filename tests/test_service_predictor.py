"""The real ONNX path: OnnxPredictor on a bundle trained in this session, against the PyTorch model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from service.app import create_app
from service.bundle import store
from service.bundle.predictor import OnnxPredictor, PredictorError
from service.settings import Settings

pytestmark = pytest.mark.slow


def airline_windows(length: int, count: int) -> np.ndarray:
    """float32 (count, length, 1): overlapping windows of the real airline series."""
    values = np.loadtxt(Path(__file__).resolve().parents[1] / "data" / "airline.csv", delimiter=",",
                        skiprows=1, usecols=1, dtype=np.float32)  # fmt: skip
    starts = np.linspace(0, len(values) - length, count).astype(int)
    return np.stack([values[s : s + length] for s in starts])[..., None]


def torch_forecast(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


def test_onnx_predictor_matches_pytorch(tiny_bundle_dir: Any) -> None:
    model_dir, name, version, torch_model = tiny_bundle_dir
    predictor = OnnxPredictor.load(store.bundle_dir(model_dir, name, version), intra_op_threads=1)
    spec = predictor.spec
    assert (spec.input_window.length, spec.horizon, spec.features) == (12, 4, ["value"])
    for batch in (1, 7, 64):
        x = airline_windows(12, batch)
        y = predictor.predict(x)
        assert y.shape == (batch, 4, 1) and y.dtype == np.float32
        np.testing.assert_allclose(y, torch_forecast(torch_model, x), rtol=1e-4, atol=1e-3)


def test_forecast_endpoint_answers_what_pytorch_answers(tiny_bundle_dir: Any) -> None:
    model_dir, name, version, torch_model = tiny_bundle_dir
    app = create_app(Settings(model_dir=model_dir, workers=1, threads=1))
    x = airline_windows(20, 5)  # 20 points: longer than the window, the last 12 are used
    body = {"series": [{"id": str(i), "values": row[:, 0].tolist()} for i, row in enumerate(x)]}
    r = app.test_client().post(f"/v1/models/{name}/forecast", json=body)
    assert r.status_code == 200, r.data
    got = np.array([f["mean"] for f in r.get_json()["forecasts"]], dtype=np.float32)
    np.testing.assert_allclose(got, torch_forecast(torch_model, x[:, -12:])[..., 0], rtol=1e-4, atol=1e-3)
    assert r.headers["X-Model-Version"] == version


def test_a_bundle_that_lies_about_its_graph_is_refused(tiny_bundle_dir: Any, tmp_path: Path) -> None:
    model_dir, name, version, _ = tiny_bundle_dir
    manifest = store.load_manifest(store.bundle_dir(model_dir, name, version))
    onnx = (store.bundle_dir(model_dir, name, version) / "model.onnx").read_bytes()
    spec = manifest.spec.model_copy(update={"features": ["value", "temp"]})
    wrong = manifest.model_copy(update={"spec": spec, "version": "v-wrong"})
    bundle = store.publish(tmp_path, wrong, onnx)
    with pytest.raises(PredictorError, match="input shape"):
        OnnxPredictor.load(bundle)
    tampered = tmp_path / "copy"
    shutil.copytree(store.bundle_dir(model_dir, name, version), tampered / name / version)
    (tampered / name / version / "model.onnx").write_bytes(onnx[:-10])
    with pytest.raises(store.StoreError, match="sha256"):
        OnnxPredictor.load(tampered / name / version)


def test_the_arena_is_shrunk_after_runs_on_more_series_than_the_threshold(tiny_bundle_dir: Any) -> None:
    """Issue 13: one 1,024-series request left a worker 70 MiB larger for good (onnxruntime's arena
    keeps what a run grew it by). Runs above ``shrink_batch`` series ask for the arena back."""
    model_dir, name, version, _ = tiny_bundle_dir
    bundle = store.bundle_dir(model_dir, name, version)
    seen: list[str | None] = []

    class Recording:
        def __init__(self, session: Any) -> None:
            self.session = session

        def run(self, outputs: Any, feeds: Any, options: Any = None) -> Any:
            key = "memory.enable_memory_arena_shrinkage"
            seen.append(options.get_run_config_entry(key) if options is not None else None)
            return self.session.run(outputs, feeds, options)

    for shrink_batch, expected in ((4, [None, "cpu:0"]), (0, [None, None])):
        predictor = OnnxPredictor.load(bundle, intra_op_threads=1, shrink_batch=shrink_batch)
        plain = predictor.predict(airline_windows(12, 5))
        predictor._session = Recording(predictor._session)  # type: ignore[assignment]
        seen.clear()
        predictor.predict(airline_windows(12, 4))
        shrunk = predictor.predict(airline_windows(12, 5))
        assert seen == expected
        np.testing.assert_array_equal(shrunk, plain)  # the same answer either way
