"""The hand-built reference for the serving benchmark: Flask + pydantic + onnxruntime, nothing else.

What a competent engineer writes in an afternoon for one model: pydantic
parses and validates the JSON (``model_validate_json``, in Rust), numpy stacks
the windows, one onnxruntime call, orjson writes the answer. No metrics, no
logging, no per-element checks beyond pydantic's float parsing, no timestamps.
Same request body as Seqcast's ``/v1/models/<name>/forecast``.

    SEQCAST_MODEL_DIR=... gunicorn -c service/gunicorn.conf.py 'bench.reference_app:create_app()'

``GET /ping`` answers a constant: the framework floor.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
from flask import Flask, Response, request
from pydantic import BaseModel


class Series(BaseModel):
    id: str | None = None
    values: list[float]


class ForecastRequest(BaseModel):
    series: list[Series]


def create_app() -> Flask:
    """One model: the CURRENT version of BENCH_MODEL (default 'bench') in SEQCAST_MODEL_DIR."""
    model_dir = Path(os.environ.get("SEQCAST_MODEL_DIR", "models"))
    name = os.environ.get("BENCH_MODEL", "bench")
    version = (model_dir / name / "CURRENT").read_text().strip()
    window = int(os.environ.get("BENCH_WINDOW", "48"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("SEQCAST_INTRA_OP_THREADS", "1"))
    opts.inter_op_num_threads = 1
    # gunicorn imports the app in each worker (no preload), so this runs after fork.
    session = ort.InferenceSession(
        str(model_dir / name / version / "model.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    session.run(["y"], {"x": np.ones((1, window, 1), dtype=np.float32)})

    app = Flask(__name__)
    pong = b'{"status":"ok"}'

    @app.get("/ping")
    def ping() -> Response:
        return Response(pong, mimetype="application/json")

    @app.post("/forecast")
    def forecast() -> Response:
        req = ForecastRequest.model_validate_json(request.get_data())
        x = np.array([s.values[-window:] for s in req.series], dtype=np.float32)[:, :, None]
        y = session.run(["y"], {"x": x})[0]  # (batch, horizon, 1)
        body = {
            "model": name,
            "version": version,
            "forecasts": [{"id": s.id, "mean": row} for s, row in zip(req.series, y[:, :, 0], strict=True)],
        }
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), mimetype="application/json")

    return app
