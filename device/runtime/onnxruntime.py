"""ONNX Runtime backend: CPU here; the TensorRT and CUDA providers first where they exist (Jetson)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from device.runtime.base import Backend, BackendConfig

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeConfig(BackendConfig):
    """generator.onnxruntime: the session's threads and which execution providers it may use."""

    device: Literal["auto", "cpu"] = Field(
        "auto", description="'auto': TensorRT, then CUDA, then the CPU, whichever this build has; 'cpu': the CPU only."
    )

    @field_validator("device", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    modules = ("onnxruntime",)
    config_model = OnnxRuntimeConfig
    config: OnnxRuntimeConfig

    def load(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Its threads would otherwise spin after each call, on the cores the warp and the encoder need
        # next: 11-20 % more frames a second without (portrait bench, 512 and 1920, 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = [p for p in PREFERRED_PROVIDERS if p in available]
        if self.config.device == "cpu":
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.files[0]), options, providers=providers)
        self.providers = self.session.get_providers()

    def io_shapes(self):
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        return inputs.get(self.input_name, []), outputs.get(self.output_name, [])

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]
