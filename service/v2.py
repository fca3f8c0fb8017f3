"""The KServe V2 / Open Inference Protocol over REST, under ``/v2``.

Health, server and model metadata, model readiness, and ``infer`` on the one
input ``x`` FP32 ``[batch, time, features]`` returning ``y`` FP32
``[batch, horizon, targets]`` and, for a model with an interval calibration,
the bounds ``y_lower_<level>`` and ``y_upper_<level>`` of the same shape (the
metadata lists 80 and 95; any level the calibration supports may be asked by
name, e.g. ``y_upper_97.5``; no outputs asked: every listed one). Tensor data may be JSON (flat row-major or
nested) or raw little-endian bytes after the JSON header (Triton's
binary-tensor extension, which tritonclient uses by default). As in ``/v1``,
history longer than the model's window is cut to its tail.

As the protocol prescribes, errors here are ``{"error": "<message>"}`` (400
for a bad request, 404 unknown model, 503 not ready), and a health or
readiness answer of false is a 400.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flask import Blueprint, Response, request
from pydantic import ValidationError

from service import __version__, known, requestlog
from service.bundle import intervals
from service.bundle.manifest import Manifest, ModelSpec
from service.bundle.predictor import predict_with_bounds
from service.errors import ModelNotFound, NotReady, ServiceError, UnsupportedMediaType, format_loc
from service.metrics import now
from service.payload import float_lists, is_json_mimetype, model_response, parse_json, read_body
from service.registry import Served
from service.schemas_v2 import (
    InferRequest,
    InferResponse,
    Live,
    MetadataTensor,
    ModelMetadata,
    ModelParameters,
    ModelReady,
    Ready,
    RequestInput,
    ServerMetadata,
)
from service.state import state
from service.values import not_positive, numbers_array

bp = Blueprint("v2", __name__, url_prefix="/v2")
DEFAULT_LEVELS = (80.0, 95.0)  # the bounds the metadata lists; any calibrated level may be asked
BOUND = re.compile(r"_(?P<side>lower|upper)_(?P<level>[0-9]{1,2}(?:\.[0-9]{1,4})?)")
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data"]


class BadInfer(ServiceError):
    status, code = 400, "invalid_request"


def _served(name: str, version: str | None) -> Served:
    served = state().registry.get(name)
    if version is not None and version != served.version:
        raise ModelNotFound(f"model {name!r} version {version!r} is not served; served: {served.version}")
    return served


@bp.get("")
def server_metadata() -> Response:
    return model_response(ServerMetadata(name="seqcast", version=__version__, extensions=EXTENSIONS))


@bp.get("/health/live")
def live() -> Response:
    return model_response(Live(live=True))


@bp.get("/health/ready")
def ready() -> Response:
    registry = state().registry
    if not registry.attempted:
        registry.load_all(blocking=False)
    is_ready = registry.readiness()[0]
    return model_response(Ready(ready=is_ready), status=200 if is_ready else 400)


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    try:
        _served(name, version)
    except NotReady:  # unknown models and versions stay 404
        return model_response(ModelReady(name=name, ready=False), status=400)
    return model_response(ModelReady(name=name, ready=True))


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    served = _served(name, version)
    spec = served.manifest.spec
    return model_response(
        ModelMetadata(
            name=name,
            versions=[served.version],
            platform="onnxruntime_onnx",
            inputs=_inputs(spec),
            outputs=[
                MetadataTensor(name=o, datatype="FP32", shape=[-1, spec.horizon, len(spec.targets)])
                for o in _listed_outputs(served.manifest)
            ],
            # Seqcast's own description of the model (the protocol allows extra fields).
            parameters=ModelParameters(spec=spec),
        )
    )


def _read_request() -> tuple[Any, bytes]:
    """(JSON header, binary tail). JSON, octet-stream or no Content-Type (tritonclient sends none)."""
    mimetype = request.mimetype
    if mimetype and not is_json_mimetype(mimetype) and mimetype != "application/octet-stream":
        raise UnsupportedMediaType(f"expected application/json or application/octet-stream, got {mimetype}")
    settings = state().settings
    data = read_body(settings.max_body_bytes, request.environ, settings.read_timeout)
    header = request.headers.get(HEADER_LENGTH)
    if header is None:
        return parse_json(data), b""
    if not (header.isascii() and header.isdigit()) or int(header) > len(data):
        raise BadInfer(f"{HEADER_LENGTH} must be a byte count within the body ({len(data)} bytes)")
    split = int(header)
    return parse_json(data[:split]), data[split:]


FUTURE_INPUT = "future"  # a model's inputs known in advance, for the forecast steps


def _inputs(spec: ModelSpec) -> list[MetadataTensor]:
    """The inputs a request sends: ``x``, the history; for a model with future columns (and no
    calendar) ``x`` holds the history's own columns and ``future`` their values for the forecast
    steps, from which the service builds the graph's input as ``/v1`` does. A calendar model takes
    the graph's own input (``spec.features``: the calendar and the known inputs read a horizon
    ahead, computed by the client), V2 tensors carrying no dates."""
    time = -1 if spec.input_window.max_length is None else spec.input_window.length
    if spec.known is None or spec.known.calendar:
        return [MetadataTensor(name=spec.input_name, datatype="FP32", shape=[-1, time, len(spec.features)])]
    return [
        MetadataTensor(name=spec.input_name, datatype="FP32", shape=[-1, time, len(spec.sent)]),
        MetadataTensor(name=FUTURE_INPUT, datatype="FP32", shape=[-1, spec.horizon, len(spec.known.future)]),
    ]


def _tensor(req: InferRequest, binary: bytes, served: Served) -> np.ndarray:
    """The graph's input as float32 ``(batch, time, features)``, checked against the model."""
    m = served.manifest
    expected = _inputs(m.spec)
    names = [t.name for t in expected]
    if [i.name for i in req.inputs] != names:
        raise BadInfer(f"expected the inputs {names}, in that order, got {[i.name for i in req.inputs]}")
    limits = state().settings
    arrays: list[np.ndarray] = []
    offset = 0
    for tensor, meta in zip(req.inputs, expected, strict=True):
        array, offset = _read(tensor, meta, binary, offset)
        arrays.append(array)
    x = arrays[0]
    batch, time = x.shape[:2]
    if not 1 <= batch <= limits.max_series:
        raise BadInfer(f"batch must be 1..{limits.max_series}, got {batch}")
    if time < m.spec.input_window.min_length:
        raise BadInfer(f"{time} time steps, the model needs at least {m.spec.input_window.min_length}")
    x = np.ascontiguousarray(x[:, -m.spec.input_window.length :])
    if len(arrays) > 1:
        if arrays[1].shape[0] != batch:
            raise BadInfer(
                f"input {FUTURE_INPUT!r} has {arrays[1].shape[0]} series, {m.spec.input_name!r} {batch}"
            )
        x = known.model_input(x, arrays[1], None, m.spec)
    problem = not_positive(x, m.spec)
    if problem is not None:
        raise BadInfer(f"input {m.spec.input_name!r}: {problem}")
    return x


def _read(tensor: RequestInput, meta: MetadataTensor, binary: bytes, offset: int) -> tuple[np.ndarray, int]:
    """One input tensor as float32 of its shape (the metadata's, ``-1`` any size), from its JSON
    data or from ``binary`` at ``offset``; and the offset after it."""
    if tensor.datatype != "FP32":
        raise BadInfer(f"input {tensor.name!r}: datatype must be FP32, got {tensor.datatype}")
    want = meta.shape
    if len(tensor.shape) != len(want) or any(
        w not in (-1, g) for w, g in zip(want, tensor.shape, strict=True)
    ):
        shown = ", ".join(("batch", "time")[i] if w == -1 else str(w) for i, w in enumerate(want))
        raise BadInfer(f"input {tensor.name!r}: shape must be [{shown}], got {tensor.shape}")
    count = int(np.prod(tensor.shape))
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != 4 * count or len(binary) < offset + size:
            raise BadInfer(
                f"input {tensor.name!r}: binary_data_size must be {4 * count} bytes for shape {tensor.shape} "
                f"and lie within the {len(binary)} bytes after the header"
            )
        flat = np.frombuffer(binary, dtype="<f4", count=count, offset=offset).astype(np.float32, copy=False)
        offset += size
    else:
        if tensor.data is None:
            raise BadInfer(f"input {tensor.name!r} has no data and no binary_data_size")
        try:
            flat = numbers_array(tensor.data)
        except ValueError as exc:
            raise BadInfer(f"input {tensor.name!r} data: {exc}") from None
        if flat.size != count:
            raise BadInfer(
                f"input {tensor.name!r} has {flat.size} values, shape {tensor.shape} needs {count}"
            )
    if not np.isfinite(flat).all():  # raw bytes can hold anything
        raise BadInfer(f"input {tensor.name!r} holds NaN or infinity")
    return flat.reshape(tensor.shape), offset


def _listed_outputs(m: Manifest) -> list[str]:
    """``y``, then the bounds at ``DEFAULT_LEVELS`` the calibration serves (``y_lower_80``...).

    Any other level up to ``intervals.max_level`` may be asked by name too (``y_upper_97.5``).
    """
    names = [m.spec.output_name]
    if m.intervals is not None:
        listed = m.intervals.levels if m.intervals.method == "quantile" else DEFAULT_LEVELS
        for level in listed:
            if level <= m.intervals.max_level:
                key = intervals.level_key(level)
                names += [f"{m.spec.output_name}_lower_{key}", f"{m.spec.output_name}_upper_{key}"]
    return names


def _bound(name: str, m: Manifest) -> tuple[str, float] | None:
    """``("lower" | "upper", level)`` for an output named like ``y_lower_80``; None for ``y``;
    400 for anything else."""
    if name == m.spec.output_name:
        return None
    match = (
        BOUND.fullmatch(name.removeprefix(m.spec.output_name))
        if name.startswith(m.spec.output_name)
        else None
    )
    if match is None:
        raise BadInfer(
            f"unknown output {name!r}; the model has {m.spec.output_name!r}"
            + (f" and bounds such as {m.spec.output_name}_lower_80" if m.intervals is not None else "")
        )
    if m.intervals is None:
        raise BadInfer(f"output {name!r}: this model has no interval calibration")
    level = float(match["level"])
    if intervals.learned_only(m.intervals, [level]):
        raise BadInfer(
            f"output {name!r}: this model learned the levels {intervals.learned_levels(m.intervals)} "
            "(network.quantiles) and serves only those"
        )
    if not 0 < level <= m.intervals.max_level:
        raise BadInfer(
            f"output {name!r}: level {match['level']} is outside (0, {m.intervals.max_level:g}], "
            f"the levels its {m.intervals.errors} calibration errors support"
        )
    return match["side"], level


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    app_state = state()
    served = _served(name, version)
    raw, binary = _read_request()
    try:
        req = InferRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BadInfer(f"{format_loc(first['loc'])}: {first['msg']}") from None
    m = served.manifest
    # As the protocol says: no outputs named, every output the metadata lists.
    names = [o.name for o in req.outputs] if req.outputs else _listed_outputs(m)
    if len(set(names)) != len(names):
        raise BadInfer(f"outputs named twice in {names}")
    bounds = {o: _bound(o, m) for o in names}
    as_binary = any((o.parameters or {}).get("binary_data") is True for o in req.outputs or []) or (
        (req.parameters or {}).get("binary_data_output") is True
    )
    x = _tensor(req, binary, served)
    levels = sorted({b[1] for b in bounds.values() if b is not None})
    started = now()
    # (batch, horizon, targets); a quantile head's bounds too when bounds are asked
    y, learned = predict_with_bounds(served.predictor, x, bool(levels))
    app_state.metrics.observe_prediction(name, served.version, x.shape[0], now() - started)
    requestlog.note_model(name, served.version, x.shape[0])
    sides: dict[str, np.ndarray] = {}  # "lower" | "upper" -> (levels, batch, horizon, targets)
    if levels and m.intervals is not None:  # _bound refused bounds of a model without one
        sides["lower"], sides["upper"] = intervals.stacked_bounds(m.intervals, x, y, levels, learned)
    outputs: list[dict[str, Any]] = []
    raw_parts: list[bytes] = []
    for o, bound in bounds.items():
        tensor = y if bound is None else sides[bound[0]][levels.index(bound[1])]
        output: dict[str, Any] = {"name": o, "datatype": "FP32", "shape": list(tensor.shape)}
        if as_binary:
            raw_parts.append(np.ascontiguousarray(tensor, dtype="<f4").tobytes())
            output["parameters"] = {"binary_data_size": len(raw_parts[-1])}
        elif not np.isfinite(tensor).all():
            raise BadInfer(
                f"output {o!r} holds NaN or infinity, which JSON cannot carry (binary_data can): "
                "are the inputs on the scale the model was trained on?"
            )
        else:
            output["data"] = float_lists(tensor.ravel())
        outputs.append(output)
    fields: dict[str, Any] = {"model_name": name, "model_version": served.version, "outputs": outputs}
    if req.id is not None:
        fields["id"] = req.id
    answer = InferResponse.model_validate(fields)
    headers = {"X-Model-Version": served.version}
    if not as_binary:
        return model_response(answer, headers=headers, exclude_unset=True)  # no "id": null, no "parameters"
    head = answer.model_dump_json(exclude_unset=True).encode()
    headers[HEADER_LENGTH] = str(len(head))
    return Response(head + b"".join(raw_parts), headers=headers, mimetype="application/octet-stream")
