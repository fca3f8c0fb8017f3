"""The small interface between the views and the runtime: load a bundle, predict.

API tests use a stand-in that satisfies ``Predictor``; ``OnnxPredictor`` is the
real one and is tested on its own against the PyTorch model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from service.bundle.manifest import MODEL_FILE, Manifest
from service.bundle.store import verify_bundle


class PredictorError(RuntimeError):
    """The graph does not match its manifest or gives an unusable answer."""


class Predictor(Protocol):
    @property
    def manifest(self) -> Manifest: ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 ``(batch, time, features)`` raw values -> float32 ``(batch, horizon, targets)`` raw."""
        ...


def warm_up_input(manifest: Manifest, batch: int = 1) -> np.ndarray:
    """float32 ``(batch, window, features)``: a gentle ramp, so per-window scaling sees a spread."""
    ramp = np.linspace(1.0, 2.0, manifest.input_window.length, dtype=np.float32)
    return np.broadcast_to(ramp[None, :, None], (batch, len(ramp), len(manifest.features))).copy()


def check_output(manifest: Manifest, x: np.ndarray, y: np.ndarray) -> None:
    expected = (x.shape[0], manifest.horizon, len(manifest.targets))
    if y.shape != expected or y.dtype != np.float32:
        raise PredictorError(
            f"model answers {y.dtype}{list(y.shape)}, the manifest promises float32{list(expected)}"
        )
    if not np.isfinite(y).all():
        raise PredictorError("model answers NaN or inf on the warm-up input")


class OnnxPredictor:
    """One onnxruntime session for one bundle; ``run`` is thread-safe, so gthread workers share it."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession) -> None:
        self._manifest = manifest
        self._session = session
        self._outputs = [manifest.output_name]
        self._input = manifest.input_name

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @classmethod
    def load(cls, bundle: Path, intra_op_threads: int = 1) -> OnnxPredictor:
        """Verify the bundle (manifest, sha256), open a session and warm it up with one inference."""
        manifest = verify_bundle(bundle)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        # Requests already run in parallel across workers; a second pool for
        # independent graph branches would only compete with them.
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning pool threads burn the cores that other workers and JSON parsing need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(
            str(Path(bundle) / MODEL_FILE), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        cls._check_signature(manifest, session)
        predictor = cls(manifest, session)
        predictor.warm_up()
        return predictor

    @staticmethod
    def _check_signature(manifest: Manifest, session: ort.InferenceSession) -> None:
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if manifest.input_name not in inputs or manifest.output_name not in outputs:
            raise PredictorError(
                f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; the manifest names "
                f"{manifest.input_name!r} -> {manifest.output_name!r}"
            )
        shape = inputs[manifest.input_name].shape
        if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != len(manifest.features)):
            raise PredictorError(
                f"input shape {shape} is not (batch, time, {len(manifest.features)} features)"
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 ``(batch, time, features)`` -> float32 ``(batch, horizon, targets)``, raw units."""
        # A tail cut from a longer history is a strided view: hand onnxruntime one block.
        x = np.ascontiguousarray(x, dtype=np.float32)
        result: np.ndarray = self._session.run(self._outputs, {self._input: x})[0]
        return result

    def warm_up(self) -> None:
        """One inference: the first run allocates and plans, so no client request pays for it."""
        x = warm_up_input(self._manifest)
        check_output(self._manifest, x, self.predict(x))
