"""Score a bundle with onnxruntime: the one predictor for serving, parity, evaluation and retraining.

The service's views talk to ``Predictor`` (API tests use a stand-in);
``OnnxPredictor`` is the real one. The trainer checks export parity, scores
the test split and compares champion and challenger through the same class,
so what is measured is what is served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from service.bundle.manifest import MODEL_FILE, ModelSpec
from service.bundle.store import verify_bundle


class PredictorError(RuntimeError):
    """The graph does not match its manifest or gives an unusable answer."""


class Predictor(Protocol):
    @property
    def spec(self) -> ModelSpec: ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 ``(batch, time, features)`` raw values -> float32 ``(batch, horizon, targets)`` raw."""
        ...

    def predict_bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A quantile head's forecast and learned bounds (``OnnxPredictor.predict_bounds``)."""
        ...


def predict_with_bounds(
    predictor: Predictor, x: np.ndarray, bounds: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(forecast, learned)``: with ``bounds`` and a quantile head, its learned bounds too, from
    the same run (``predict_bounds``); otherwise ``predict`` alone and None (conformal bounds are
    computed from the forecast, ``service.bundle.intervals``)."""
    if bounds and predictor.spec.bounds_name is not None:
        return predictor.predict_bounds(x)
    return predictor.predict(x), None


SHRINK_BATCH = 256  # default of SEQCAST_ARENA_SHRINK_BATCH (docs/benchmarks.md, "Worker memory")


def warm_up_input(spec: ModelSpec, batch: int = 1) -> np.ndarray:
    """float32 ``(batch, window, features)``: a gentle ramp, so per-window scaling sees a spread."""
    ramp = np.linspace(1.0, 2.0, spec.input_window.length, dtype=np.float32)
    return np.broadcast_to(ramp[None, :, None], (batch, len(ramp), len(spec.features))).copy()


def check_output(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> None:
    expected = (x.shape[0], spec.horizon, len(spec.targets))
    if y.shape != expected or y.dtype != np.float32:
        raise PredictorError(
            f"model answers {y.dtype}{list(y.shape)}, the manifest promises float32{list(expected)}"
        )
    if not np.isfinite(y).all():
        raise PredictorError("model answers NaN or inf on the warm-up input")


class OnnxPredictor:
    """One onnxruntime session for one bundle; ``run`` is thread-safe, so gthread workers share it."""

    def __init__(
        self, spec: ModelSpec, session: ort.InferenceSession, shrink_batch: int = SHRINK_BATCH
    ) -> None:
        self._spec = spec
        self._session = session
        self._outputs = [spec.output_name]
        self._with_bounds = [spec.output_name] + ([spec.bounds_name] if spec.bounds_name else [])
        self._input = spec.input_name
        # After a run on more than ``shrink_batch`` series onnxruntime returns the arena memory
        # that run grew by, so one 1,024-series request does not leave a worker 70 MiB larger for
        # good; smaller runs keep the arena warm (a shrunk arena is allocated again by the next
        # run: twice the model time of a 1,024-series batch). 0: never shrink.
        self._shrink_batch = shrink_batch
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def _options(self, x: np.ndarray) -> ort.RunOptions | None:
        return self._shrink if 0 < self._shrink_batch < x.shape[0] else None

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @classmethod
    def load(cls, bundle: Path, intra_op_threads: int = 1, shrink_batch: int = SHRINK_BATCH) -> OnnxPredictor:
        """Verify the bundle (manifest, sha256), open a session and warm it up with one inference."""
        manifest = verify_bundle(bundle)
        onnx = (Path(bundle) / MODEL_FILE).read_bytes()
        return cls.from_bytes(onnx, manifest.spec, intra_op_threads, shrink_batch)

    @classmethod
    def from_bytes(
        cls, onnx: bytes, spec: ModelSpec, intra_op_threads: int = 1, shrink_batch: int = SHRINK_BATCH
    ) -> OnnxPredictor:
        """A predictor for a graph described by ``spec``, published or not (the trainer's parity
        check and scoring use it before publishing)."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        # Requests already run in parallel across workers; a second pool for
        # independent graph branches would only compete with them.
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning pool threads burn the cores that other workers and JSON parsing need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(onnx, sess_options=opts, providers=["CPUExecutionProvider"])
        cls._check_signature(spec, session)
        predictor = cls(spec, session, shrink_batch)
        predictor.warm_up()
        return predictor

    @staticmethod
    def _check_signature(spec: ModelSpec, session: ort.InferenceSession) -> None:
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if spec.bounds_name is not None and spec.bounds_name not in outputs:
            raise PredictorError(
                f"graph has outputs {sorted(outputs)}; a quantile head needs {spec.bounds_name!r}"
            )
        if spec.input_name not in inputs or spec.output_name not in outputs:
            raise PredictorError(
                f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; the manifest names "
                f"{spec.input_name!r} -> {spec.output_name!r}"
            )
        shape = inputs[spec.input_name].shape
        if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != len(spec.features)):
            raise PredictorError(f"input shape {shape} is not (batch, time, {len(spec.features)} features)")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 ``(batch, time, features)`` -> float32 ``(batch, horizon, targets)``, raw units."""
        # A tail cut from a longer history is a strided view: hand onnxruntime one block.
        x = np.ascontiguousarray(x, dtype=np.float32)
        result: np.ndarray = self._session.run(self._outputs, {self._input: x}, self._options(x))[0]
        return result

    def predict_bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A quantile head's float32 ``(forecast, bounds)`` in one run: ``(batch, horizon,
        targets)`` and ``(2, levels, batch, horizon, targets)`` (lower, then upper; the manifest's
        ``network.quantiles``). PredictorError for a model without them."""
        if self._spec.bounds_name is None:
            raise PredictorError("this model learns no bounds (network.quantiles is empty)")
        x = np.ascontiguousarray(x, dtype=np.float32)
        y, bounds = self._session.run(self._with_bounds, {self._input: x}, self._options(x))
        return y, bounds

    def warm_up(self) -> None:
        """One inference: the first run allocates and plans, so no client request pays for it."""
        x = warm_up_input(self._spec)
        check_output(self._spec, x, self.predict(x))
        if self._spec.bounds_name is not None:
            y, bounds = self.predict_bounds(x)
            expected = (2, len(self._spec.network.quantiles), *y.shape)
            if bounds.shape != expected or not np.isfinite(bounds).all():
                raise PredictorError(
                    f"the graph's bounds are {list(bounds.shape)}, expected finite {list(expected)}"
                )
