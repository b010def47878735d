"""The one small interface every generator runtime implements (Frigate-detector-plugin style).

A backend gets the bundle's entry for its runtime (files already verified by hash, tensor names and
layout), the generator contract and its own settings, and runs one crop: `run(x)` takes and returns the
contract's canonical NCHW float32 tensors, whatever layout its own file uses.

Each backend declares its settings as a small pydantic model (`config_model`, a `BackendConfig`): the
daemon's config validates `generator.<runtime>` against it, and the backend reads `self.config`.
"""

from __future__ import annotations

import importlib.util
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from device.errors import BadInput


class BackendConfig(BaseModel):
    """The settings every runtime takes; a backend's own model adds its runtime's. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(2, ge=1, le=256, description="CPU threads for one generator call.")


class Backend(ABC):
    name: str = ""  # the runtime's name in --backend and in the bundle manifest
    modules: tuple[str, ...] = ()  # any one of these importable = the runtime is installed
    config_model: ClassVar[type[BackendConfig]] = BackendConfig  # this runtime's settings (generator.<name>)

    def __init__(
        self,
        files: list[Path],
        entry: dict,
        contract: dict,
        threads: int | None = None,
        device: str | None = None,
        config: BackendConfig | Mapping[str, Any] | None = None,
    ):
        """`config`: this runtime's settings (its `config_model`, or a mapping validated by it); `threads`
        and `device`, when given, override the settings' own (a runtime without a device setting ignores it)."""
        self.config = self.make_config(config, threads=threads, device=device)
        self.files, self.entry, self.contract = files, entry, contract
        self.layout = entry.get("layout", "NCHW")
        self.input_name = entry.get("input", contract["inputs"][0]["name"])
        self.output_name = entry.get("output", contract["outputs"][0]["name"])
        self.input_shape = list(contract["inputs"][0]["shape"])
        self.output_shape = list(contract["outputs"][0]["shape"])
        # One backend serves the daemon's jobs and its live stage at once; an OpenVINO infer request and
        # a TFLite interpreter hold one set of tensors, so calls take turns.
        self._lock = threading.Lock()
        self.load()
        self._check_shapes()

    @classmethod
    def make_config(
        cls,
        config: BackendConfig | Mapping[str, Any] | None = None,
        threads: int | None = None,
        device: str | None = None,
    ) -> BackendConfig:
        """The settings validated by `config_model`; a wrong one raises BadInput naming the field."""
        if isinstance(config, BaseModel):
            config = config.model_dump()
        options = dict(config or {})
        if threads is not None:
            options["threads"] = threads
        if device is not None and "device" in cls.config_model.model_fields:
            options["device"] = device
        try:
            return cls.config_model.model_validate(options)
        except ValidationError as exc:
            problems = "; ".join(
                f"generator.{cls.name}.{'.'.join(map(str, e['loc']))}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            )
            raise BadInput(problems) from None

    @classmethod
    def available(cls) -> bool:
        return any(importlib.util.find_spec(m) is not None for m in cls.modules)

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """One inference in the file's own layout."""

    @abstractmethod
    def io_shapes(self) -> tuple[list[int], list[int]]:
        """The model file's input and output shapes, in its own layout."""

    def _to_own(self, shape: list[int]) -> list[int]:
        return [shape[0], shape[2], shape[3], shape[1]] if self.layout == "NHWC" else list(shape)

    def _check_shapes(self) -> None:
        got_in, got_out = self.io_shapes()
        want_in, want_out = self._to_own(self.input_shape), self._to_own(self.output_shape)
        if list(got_in) != want_in or list(got_out) != want_out:
            raise BadInput(
                f"model bundle: the {self.name} model takes {list(got_in)} -> {list(got_out)} but the manifest's "
                f"contract says {want_in} -> {want_out} ({self.layout}); the bundle does not match its files"
            )

    def run(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in, NCHW float32 out (the contract's canonical layout)."""
        x = np.ascontiguousarray(x, np.float32)
        if self.layout == "NHWC":
            with self._lock:
                y = self._run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        with self._lock:
            return self._run(x)
