"""OpenVINO backend: CPU by default; GPU/NPU/AUTO device names are passed through."""

from __future__ import annotations

import numpy as np

from device.runtime.base import Backend


class OpenVinoBackend(Backend):
    name = "openvino"
    modules = ("openvino",)

    def load(self) -> None:
        import openvino as ov

        core = ov.Core()
        xml = next(f for f in self.files if f.suffix == ".xml")
        model = core.read_model(str(xml))
        device = (self.device or "CPU").upper()
        config = {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY"} if device == "CPU" else {}
        if self.entry.get("inference_precision"):  # e.g. "f32": no silent bf16 on CPUs that have it
            config["INFERENCE_PRECISION_HINT"] = self.entry["inference_precision"]
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        self._input = self.compiled.input(self.input_name)
        self._output = self.compiled.output(self.output_name)

    def io_shapes(self):
        return list(self._input.get_shape()), list(self._output.get_shape())

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({self._input: x})
        return self.request.get_tensor(self._output).data.copy()
