"""The TFLite interpreter the face models run on: ai-edge-litert, else the older tflite-runtime."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import PortraitError


def load_interpreter(path: Path, threads: int = 2) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError as error:
            raise PortraitError(
                "no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime)"
            ) from error
    with _quiet_stderr():
        # The runtime prints an INFO line about its XNNPACK delegate to fd 2 on every load.
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class TFLiteModel:
    """One single-input TFLite model; outputs come back in the model's own order."""

    def __init__(self, path: Path, threads: int = 2) -> None:
        self.path = path
        self.interpreter = load_interpreter(path, threads)
        detail = self.interpreter.get_input_details()[0]
        self.input_index = detail["index"]
        self.input_shape = tuple(int(v) for v in detail["shape"])
        self.output_indices = [d["index"] for d in self.interpreter.get_output_details()]
        # The daemon's analyzer is shared by the live preview and the job threads; an interpreter holds
        # one set of tensors, so calls take turns.
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(batch, dtype=np.float32))
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(i).copy() for i in self.output_indices]
