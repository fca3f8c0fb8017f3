"""Numbers of any magnitude (issue 13, finding 4): the window scaling is scale-invariant, and a
served forecast is finite for finite inputs far beyond what a model was trained on.

Before: an absolute 1e-5 on the window's variance put a series of millionths 7x off, and squares
of values near 1e19 overflowed float32 inside the graph (a 200 with ``null`` forecasts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from service.app import create_app
from service.settings import Settings
from training.models import Scaler

FACTORS = [1e-6, 1e-3, 1.0, 1e3, 1e6, 1e9, 1e12, 1e15]
AIRLINE = pd.read_csv("data/airline.csv")["value"].to_numpy(dtype=np.float64)


@pytest.mark.parametrize("factor", FACTORS)
def test_the_window_scaling_is_scale_invariant(factor: float) -> None:
    x = torch.from_numpy(np.random.default_rng(0).normal(3.0, 1.0, size=(4, 12, 2)).astype(np.float32))
    scaler = Scaler("window", 2)
    norm, loc, scale = scaler(x)
    norm_c, loc_c, scale_c = scaler(x * factor)
    torch.testing.assert_close(norm_c, norm, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loc_c / factor, loc, rtol=1e-4, atol=0)
    torch.testing.assert_close(scale_c / factor, scale, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    "window",
    [
        np.zeros(12),  # nothing to scale by
        np.full(12, 7.0),  # constant
        np.tile([1e19, -1e19], 6),  # squares beyond float32
        np.tile([3e38, -3e38], 6),  # the largest float32 values
        np.full(12, 1e-30),  # tiny and constant
    ],
    ids=["zeros", "constant", "alternating 1e19", "float32 max", "1e-30"],
)
def test_the_window_scaling_is_finite_for_every_finite_window(window: np.ndarray) -> None:
    x = torch.from_numpy(window.astype(np.float32)).reshape(1, -1, 1)
    norm, loc, scale = Scaler("window", 1)(x)
    assert torch.isfinite(norm).all() and torch.isfinite(loc).all() and torch.isfinite(scale).all()
    assert (scale > 0).all()
    if not window.any():  # nothing to scale by: scale 1, so what follows stays in the data's units
        assert float(scale) == 1.0


@pytest.mark.slow
def test_served_forecasts_scale_with_the_input_from_1e_minus_6_to_1e15(tiny_bundle_dir: Any) -> None:
    """The tiny airline LSTM (window scaling), through /v1 and /v2: the forecast of the airline
    series times c is c times the forecast of the series, and always a 200 with finite numbers."""
    model_dir, name, _, _ = tiny_bundle_dir
    client = create_app(Settings(model_dir=model_dir, workers=1, threads=1)).test_client()
    history = AIRLINE[-24:]

    def forecast(values: np.ndarray) -> np.ndarray:
        r = client.post(f"/v1/models/{name}/forecast", json={"series": [{"values": values.tolist()}]})
        assert r.status_code == 200, r.get_json()
        return np.array(r.get_json()["forecasts"][0]["mean"], dtype=np.float64)

    base = forecast(history)
    for factor in FACTORS:
        np.testing.assert_allclose(forecast(history * factor) / factor, base, rtol=2e-4, err_msg=str(factor))
    for wild in (AIRLINE[-24:] * 1e17, np.tile([1e19, -1e19], 12)):
        assert np.isfinite(forecast(wild)).all()
        tensor = {"name": "x", "shape": [1, 12, 1], "datatype": "FP32", "data": wild[-12:].tolist()}
        r = client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]})
        assert r.status_code == 200, r.get_json()
        assert np.isfinite(np.array(r.get_json()["outputs"][0]["data"], dtype=np.float64)).all()
