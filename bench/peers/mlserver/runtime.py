"""MLServer's side of bench/batching_bench.py: the same ONNX graph in a custom MLServer runtime.

MLServer ships no onnxruntime runtime; this one is what a user would write: a
session with one intra-op thread (as Seqcast's workers have), the V2 input
``x`` decoded with MLServer's NumPy codec, the output ``y`` encoded with it.
MLServer's adaptive batching (``max_batch_size`` and ``max_batch_time`` in
model-settings.json, written by the benchmark) stacks concurrent requests along
the first axis before ``predict`` and splits the answer after it.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxForecaster(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        uri = self.settings.parameters.uri if self.settings.parameters else None
        self.session = ort.InferenceSession(uri, opts, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = self.session.run(["y"], {"x": x.astype("float32", copy=False)})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
