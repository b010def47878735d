"""OpenVINO backend: CPU by default; GPU/NPU/AUTO device names are passed through."""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from device.runtime.base import Backend, BackendConfig


class OpenVinoConfig(BackendConfig):
    """generator.openvino: the OpenVINO device the model is compiled for, and its CPU threads."""

    device: str = Field(
        "CPU",
        pattern=r"^[A-Z0-9_.:,()-]+$",
        description="OpenVINO device name: CPU, GPU, GPU.1, NPU, AUTO, HETERO:GPU,CPU ... (threads apply to CPU only).",
    )

    @field_validator("device", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value


class OpenVinoBackend(Backend):
    name = "openvino"
    modules = ("openvino",)
    config_model = OpenVinoConfig
    config: OpenVinoConfig

    def load(self) -> None:
        import openvino as ov

        core = ov.Core()
        xml = next(f for f in self.files if f.suffix == ".xml")
        model = core.read_model(str(xml))
        device, threads = self.config.device, self.config.threads
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"} if device == "CPU" else {}
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
