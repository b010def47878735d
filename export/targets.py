"""The INT8 targets: one table (`TARGETS`) that drives the export, the validation and the benchmark table.

Each `Target` knows everything about its runtime that the pipeline needs: how to build its FP32 baseline
and INT8 files from the ONNX FP32 model (or the PyTorch model, for TFLite) and a calibration set, the
names of those files, what the manifest says about its calibration, how the device backend runs each
file (its entry: layout, input and output names, runtime options), and which device backend validates
it. The pipeline (export/pipeline.py) only walks the table.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.runtime import backend_class


@dataclass
class Build:
    """What one target built in the work folder, and how the device backend runs each precision."""

    target: Target
    fp32_files: list[Path]
    int8_files: list[Path]
    fp32_entry: dict
    entry: dict


class Target:
    name = ""  # the manifest's runtime key and the device backend (device.runtime.backend_class)
    layout = "NCHW"
    fp32_file = ""  # its FP32 baseline in the work folder (none: the ONNX FP32 model itself)
    int8_file = ""  # the INT8 model in the bundle (OpenVINO: its .xml, with the .bin beside it)

    def calibration(self, options: dict) -> str:
        """How it is calibrated, for the manifest's calibration summary."""
        raise NotImplementedError

    def fp32(self, onnx_path: Path, model, shape: list[int], work: Path) -> list[Path]:
        """The FP32 files of this runtime; `shape` is the contract's NCHW input shape."""
        raise NotImplementedError

    def int8(self, fp32_files: list[Path], calib: np.ndarray, work: Path, options: dict) -> list[Path]:
        raise NotImplementedError

    def entry(self, files: list[Path]) -> dict:
        return {"layout": self.layout, "input": "crop", "output": "change"}

    def fp32_entry(self, files: list[Path]) -> dict:
        """How the FP32 baseline row is run: like the INT8 entry unless the runtime would silently lower it."""
        return self.entry(files)

    def backend(self, files: list[Path], entry: dict, contract: dict, threads: int):
        """The device's own backend for these files: validation and timing run what the device runs."""
        return backend_class(self.name)(files, entry, contract, threads=threads)

    def baseline(self, onnx_path: Path, model, contract: dict, work: Path, log=print) -> tuple[list[Path], dict]:
        """The FP32 files (the baseline row) and the entry they run with."""
        log(f"export: {self.name}: FP32")
        files = self.fp32(onnx_path, model, contract["inputs"][0]["shape"], work)
        return files, self.fp32_entry(files)

    def quantize(
        self, fp32_files: list[Path], calib: np.ndarray, work: Path, options: dict, log=print
    ) -> tuple[list[Path], dict]:
        """The INT8 files, calibrated on `calib`, and the entry the device runs them with."""
        log(f"export: {self.name}: INT8 (calibrating on {len(calib)} crops)")
        files = self.int8(fp32_files, calib, work, options)
        return files, self.entry(files)


class OnnxRuntimeTarget(Target):
    """Static QDQ: uint8 activations, int8 per-channel weights, reduce_range (on by default: x86 without VNNI
    needs it)."""

    name = "onnxruntime"
    int8_file = "generator.int8.onnx"

    def calibration(self, options):
        return (
            "quantize_static QDQ, per-channel int8 weights, uint8 activations, "
            f"MinMax, reduce_range={options.get('reduce_range', True)}"
        )

    def fp32(self, onnx_path, model, shape, work):
        return [onnx_path]

    def int8(self, fp32_files, calib, work, options):
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter(calib)

            def get_next(self):
                x = next(self.items, None)
                return None if x is None else {"crop": x[None]}

        pre = work / "ort.pre.onnx"
        quant_pre_process(str(fp32_files[0]), str(pre), skip_symbolic_shape=True)
        out = work / self.int8_file
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=options.get("reduce_range", True),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"CalibMovingAverage": False},
        )
        return [out]


class OpenVinoTarget(Target):
    """OpenVINO IR, quantized by NNCF post-training quantization (preset MIXED: symmetric weights,
    asymmetric activations)."""

    name = "openvino"
    fp32_file = "ov.fp32.xml"
    int8_file = "generator.int8.xml"

    def calibration(self, options):
        return "nncf.quantize preset MIXED, fast bias correction"

    def fp32(self, onnx_path, model, shape, work):
        import openvino as ov

        ov_model = ov.convert_model(str(onnx_path))
        out = work / self.fp32_file
        ov.save_model(ov_model, str(out), compress_to_fp16=False)
        return [out, out.with_suffix(".bin")]

    def int8(self, fp32_files, calib, work, options):
        import nncf
        import openvino as ov

        model = ov.Core().read_model(str(fp32_files[0]))
        dataset = nncf.Dataset(list(calib), lambda x: x[None])
        quantized = nncf.quantize(
            model, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(calib), fast_bias_correction=True
        )
        out = work / self.int8_file
        ov.save_model(quantized, str(out), compress_to_fp16=False)
        return [out, out.with_suffix(".bin")]

    def fp32_entry(self, files):
        # On CPUs with AVX512-BF16 or AMX, OpenVINO runs an FP32 model in bf16 unless told otherwise:
        # the FP32 row of the table must be FP32.
        return self.entry(files) | {"inference_precision": "f32"}


class TfliteTarget(Target):
    """litert-torch to an FP32 .tflite with channel-last I/O, then ai-edge-quantizer static int8
    weights and activations (float32 I/O with quantize/dequantize at the ends)."""

    name = "tflite"
    layout = "NHWC"
    fp32_file = "tflite.fp32.tflite"
    int8_file = "generator.int8.tflite"

    def calibration(self, options):
        return "ai-edge-quantizer static_wi8_ai8 (min/max)"

    def fp32(self, onnx_path, model, shape, work):
        import litert_torch
        import torch

        batch, channels, height, width = shape
        wrapped = litert_torch.to_channel_last_io(model, args=[0], outputs=[0]).eval()
        with contextlib.redirect_stdout(io.StringIO()):
            edge = litert_torch.convert(wrapped, (torch.zeros(batch, height, width, channels),))
        out = work / self.fp32_file
        edge.export(str(out))
        return [out]

    def int8(self, fp32_files, calib, work, options):
        from ai_edge_quantizer import quantizer, recipe

        signature_input = self._input_name(fp32_files[0])
        qt = quantizer.Quantizer(str(fp32_files[0]))
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        data = [{signature_input: np.ascontiguousarray(x.transpose(1, 2, 0)[None])} for x in calib]
        with contextlib.redirect_stdout(io.StringIO()):
            result = qt.calibrate({"serving_default": data}, num_threads=options.get("threads", 2))
            quantized = qt.quantize(result, enable_progress_report=False)
        out = work / self.int8_file
        quantized.export_model(str(out), overwrite=True)
        return [out]

    @staticmethod
    def _input_name(path: Path) -> str:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
        return next(iter(runner.get_input_details()))

    def entry(self, files):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(files[0]))
        return {
            "layout": self.layout,
            "input": interpreter.get_input_details()[0]["name"],
            "output": interpreter.get_output_details()[0]["name"],
        }


TARGETS: dict[str, Target] = {t.name: t for t in (OnnxRuntimeTarget(), OpenVinoTarget(), TfliteTarget())}
