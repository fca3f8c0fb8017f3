"""Stand-ins for the service tests: fake bundles on disk and a predictor that needs no ONNX.

The stub forecast is easy to check by hand: step ``h`` (1-based) of target
``t`` is the last input value of that target plus ``h``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from service.bundle import store
from service.bundle.manifest import DataInfo, InputWindow, Manifest, ModelSpec, NetworkSpec
from service.bundle.predictor import PredictorError
from service.settings import Settings

FAKE_ONNX = b"stub: not an ONNX graph"


def make_manifest(
    name: str,
    *,
    features: tuple[str, ...] = ("value",),
    targets: tuple[str, ...] = ("value",),
    window: int = 6,
    horizon: int = 3,
    frequency: str | None = "MS",
    version: str = "v1",
    onnx: bytes = FAKE_ONNX,
) -> Manifest:
    spec = ModelSpec(
        network=NetworkSpec(cell="lstm", head="direct"),
        input_window=InputWindow(length=window, min_length=window),
        features=list(features),
        targets=list(targets),
        horizon=horizon,
        frequency=frequency,
    )
    return Manifest(
        name=name,
        version=version,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        spec=spec,
        training_config={},
        data=DataInfo(fingerprint="0" * 64, source="stub", series=1, rows=100),
        onnx_sha256=store.sha256_bytes(onnx),
    )


def publish_stub(model_dir: Path, manifest: Manifest, onnx: bytes = FAKE_ONNX) -> Path:
    return store.publish(model_dir, manifest, onnx)


class StubPredictor:
    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self.calls: list[tuple[int, ...]] = []

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 (batch, time, features) -> float32 (batch, horizon, targets)."""
        assert x.dtype == np.float32 and x.ndim == 3, (x.dtype, x.shape)
        self.calls.append(x.shape)
        spec = self._spec
        last = x[:, -1:, : len(spec.targets)]  # (batch, 1, targets)
        steps = np.arange(1, spec.horizon + 1, dtype=np.float32)[None, :, None]
        return (last + steps).astype(np.float32)

    def predict_bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A quantile head's (forecast, bounds): the forecast -/+ 1 and 2 per learned level."""
        levels = self._spec.network.quantiles
        if not levels:
            raise PredictorError("this model learns no bounds (network.quantiles is empty)")
        y = self.predict(x)
        offsets = np.arange(1, len(levels) + 1, dtype=np.float32)[:, None, None, None]
        return y, np.stack([y[None] - offsets, y[None] + offsets]).astype(np.float32)


def stub_loader(bundle: Path) -> StubPredictor:
    """Loads any bundle whose manifest reads; 'broken*' models fail like a bad graph would."""
    manifest = store.verify_bundle(bundle)
    if manifest.name.startswith("broken"):
        raise RuntimeError("cannot parse model.onnx (stub)")
    return StubPredictor(manifest.spec)


def standard_models(model_dir: Path) -> None:
    """uni: 1 feature, window 6, horizon 3, MS; multi: 2 targets + 1 covariate, window 4, horizon 2, h;
    nofreq: univariate without a frequency; broken: fails to load; staged: no CURRENT."""
    publish_stub(model_dir, make_manifest("uni"))
    publish_stub(
        model_dir,
        make_manifest(
            "multi", features=("x", "y", "temp"), targets=("x", "y"), window=4, horizon=2, frequency="h"
        ),
    )
    publish_stub(model_dir, make_manifest("nofreq", frequency=None))
    publish_stub(model_dir, make_manifest("broken"))
    store.publish(model_dir, make_manifest("staged"), FAKE_ONNX, make_current=False)


def settings_for(model_dir: Path, **overrides: object) -> Settings:
    return Settings(model_dir=model_dir, workers=1, threads=1, **overrides)  # type: ignore[arg-type]
