"""TFLite backend: ai-edge-litert (XNNPACK, thread count), tflite-runtime as the fallback import."""

from __future__ import annotations

import numpy as np

from device.runtime.base import Backend, BackendConfig


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the numpy<2 fallback runtime
        from tflite_runtime.interpreter import Interpreter
    return Interpreter


class TfliteConfig(BackendConfig):
    """generator.tflite: the interpreter's threads (XNNPACK's thread pool)."""


class TfliteBackend(Backend):
    name = "tflite"
    modules = ("ai_edge_litert", "tflite_runtime")
    config_model = TfliteConfig

    def load(self) -> None:
        interpreter = _interpreter_class()(model_path=str(self.files[0]), num_threads=self.config.threads)
        interpreter.allocate_tensors()
        self.interpreter = interpreter
        inputs = {d["name"]: d for d in interpreter.get_input_details()}
        outputs = {d["name"]: d for d in interpreter.get_output_details()}
        # A single-input/-output model may name its tensors after the converter (serving_default_args_0:0).
        self._in = inputs.get(self.input_name) or (next(iter(inputs.values())) if len(inputs) == 1 else None)
        self._out = outputs.get(self.output_name) or (next(iter(outputs.values())) if len(outputs) == 1 else None)

    def io_shapes(self):
        if self._in is None or self._out is None:
            return [], []
        return [int(v) for v in self._in["shape"]], [int(v) for v in self._out["shape"]]

    def _run(self, x: np.ndarray) -> np.ndarray:
        interpreter = self.interpreter
        detail = self._in
        if detail["dtype"] != np.float32:  # a model with integer I/O: quantize by its own parameters
            scale, zero = detail["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(detail["dtype"]).min, np.iinfo(detail["dtype"]).max)
        interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(self._out["index"])
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32, copy=False)
