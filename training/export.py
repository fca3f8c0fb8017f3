"""Export a trained Forecaster to ONNX and prove that the served graph matches PyTorch.

Export is a tested step: named input ``x: float32[batch, time, features]`` and
output ``y: float32[batch, horizon, targets]``, a dynamic batch axis (and a
dynamic time axis for the recurrent heads), ``onnx.checker``, and parity with
PyTorch on real windows at batch sizes 1, 7 and 256, run through the service's
own ``OnnxPredictor``. A model whose ONNX answer differs by more than
``parity_tolerance x data scale`` is never published.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import torch

from service.bundle.predictor import OnnxPredictor
from training.models import Model, WithBounds

PARITY_BATCHES = (1, 7, 256)


class ExportError(RuntimeError):
    """The ONNX graph is invalid or does not reproduce the PyTorch model."""


@dataclass
class Parity:
    max_abs_diff: float
    allowed: float
    checks: list[str]


def has_dynamic_time(model: Model) -> bool:
    return model.spec.input_window.max_length is None


def to_onnx(model: Model, example: np.ndarray, exporter: str = "torchscript", opset: int = 17) -> bytes:
    """Serialise ``model`` (on CPU, eval mode) to ONNX bytes. ``example``: ``(batch, time, features)``."""
    model = model.to("cpu").eval()
    x = torch.from_numpy(np.ascontiguousarray(example[:2], dtype=np.float32))
    axes = {0: "batch", 1: "time"} if has_dynamic_time(model) else {0: "batch"}
    spec = model.spec
    # a quantile head's graph answers its learned bounds too: (2, levels, batch, horizon, targets)
    graph: torch.nn.Module = model if spec.bounds_name is None else WithBounds(model)
    outputs = [spec.output_name] if spec.bounds_name is None else [spec.output_name, spec.bounds_name]
    out_axes = {spec.output_name: {0: "batch"}} | (
        {spec.bounds_name: {2: "batch"}} if spec.bounds_name else {}
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which
        # unrolls LSTM/GRU into per-step ops and freezes the time axis; it also
        # warns about batch sizes with RNNs, which the parity check below covers.
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                graph,
                (x,),
                buf,  # type: ignore[arg-type]  # a binary file object works; the stubs say path only
                input_names=[spec.input_name],
                output_names=outputs,
                dynamic_axes={spec.input_name: axes} | out_axes,
                opset_version=opset,
                dynamo=False,
            )
        elif exporter == "dynamo":
            dims = {k: torch.export.Dim.DYNAMIC for k in axes}
            program = torch.onnx.export(
                graph,
                (x,),
                input_names=[spec.input_name],
                output_names=outputs,
                dynamic_shapes={"x": dims},
                opset_version=opset,
                dynamo=True,
            )
            if program is None:
                raise ExportError("torch.onnx.export returned no program")
            program.save(buf)  # type: ignore[arg-type]  # as above
        else:
            raise ExportError(f"unknown exporter {exporter!r}")
    data = buf.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the graph: {exc}") from exc
    return data


PARITY_ULPS = 16  # float32 rounding allowed at the values' magnitude (check_parity); seen: 1 to 2


def check_parity(
    model: Model, predictor: OnnxPredictor, windows: np.ndarray, data_scale: float, tolerance: float = 1e-4
) -> Parity:
    """Compare the served graph (``predictor``) with PyTorch on real windows ``(n, time, features)``.

    Batch sizes 1, 7 and 256 (windows repeated when there are fewer), plus a
    longer history for heads with a dynamic time axis and the shortest history a generative
    head accepts (``input_window.min_length``). Raises ExportError.
    """
    if len(windows) == 0:
        raise ExportError("no windows to check parity on")
    model = model.to("cpu").eval()
    # Both runtimes compute in float32 and round differently: by an ulp or two of the values'
    # magnitude, which for a series far from zero (a lake level at 10,000 +- 0.3: 1 ulp is 1e-3)
    # is more than 1e-4 of its spread. A few ulps are allowed on top; an export bug is off by a
    # share of the spread itself, which 16 ulps stay far below until magnitude / spread nears 1e5.
    magnitude = float(np.abs(windows).max())
    rounding = PARITY_ULPS * float(np.finfo(np.float32).eps) * magnitude
    allowed = tolerance * max(float(data_scale), 1e-8) + rounding
    worst = 0.0
    checks = []
    cases = [(b, windows) for b in PARITY_BATCHES]
    if has_dynamic_time(model):
        # A longer history than the window must also run (clients may send more).
        longer = np.concatenate([windows[:, :1].repeat(5, axis=1), windows], axis=1)
        cases.append((7, longer))
    shortest = model.spec.input_window.min_length
    if shortest < windows.shape[1]:
        # A generative head promises forecasts from a history that short: the graph must agree there
        cases.append((7, windows[:, -shortest:]))
    for batch, source in cases:
        x = np.resize(source, (batch, *source.shape[1:])).astype(np.float32)
        with torch.no_grad():
            if model.spec.bounds_name is None:
                ref = model(torch.from_numpy(x)).numpy()
                got = predictor.predict(x)
            else:  # the forecast and the learned bounds, compared as one array
                ref = np.concatenate([t.numpy().ravel() for t in model.forward_bounds(torch.from_numpy(x))])
                got = np.concatenate([a.ravel() for a in predictor.predict_bounds(x)])
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} at batch {batch}")
        diff = float(np.max(np.abs(got - ref)))
        worst = max(worst, diff)
        checks.append(f"batch {batch} x time {x.shape[1]}: max |diff| {diff:.3g}")
        if not diff <= allowed:  # also catches NaN
            raise ExportError(
                f"ONNX differs from PyTorch by {diff:.3g} at batch {batch}, time {x.shape[1]} "
                f"(allowed {allowed:.3g} = {tolerance} x data scale {data_scale:.4g} + {PARITY_ULPS} "
                f"float32 ulps of the largest |value| {magnitude:.4g})"
            )
    return Parity(max_abs_diff=worst, allowed=allowed, checks=checks)


def opset_of(onnx_bytes: bytes) -> int | None:
    model = onnx.load_from_string(onnx_bytes)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
