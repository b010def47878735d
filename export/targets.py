"""The three INT8 targets. Each builds its FP32 and INT8 files from the ONNX FP32 model (or the
PyTorch model, for TFLite) and a calibration set, and says how the device backend reads them."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np


class Target:
    name = ""
    layout = "NCHW"

    def fp32(self, onnx_path: Path, model, size: int, work: Path) -> list[Path]: ...

    def int8(self, fp32_files: list[Path], calib: np.ndarray, work: Path, options: dict) -> list[Path]: ...

    def entry(self, files: list[Path]) -> dict:
        return {"layout": self.layout, "input": "crop", "output": "refined"}

    def fp32_entry(self, files: list[Path]) -> dict:
        """How the FP32 baseline row is run: like the INT8 entry unless the runtime would silently lower it."""
        return self.entry(files)


class OnnxRuntimeTarget(Target):
    """Static QDQ: uint8 activations, int8 per-channel weights, reduce_range (on by default: x86 without VNNI
    needs it)."""

    name = "onnxruntime"

    def fp32(self, onnx_path, model, size, work):
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
        out = work / "generator.int8.onnx"
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

    def fp32(self, onnx_path, model, size, work):
        import openvino as ov

        ov_model = ov.convert_model(str(onnx_path))
        out = work / "ov.fp32.xml"
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
        out = work / "generator.int8.xml"
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

    def fp32(self, onnx_path, model, size, work):
        import litert_torch
        import torch

        wrapped = litert_torch.to_channel_last_io(model, args=[0], outputs=[0]).eval()
        with contextlib.redirect_stdout(io.StringIO()):
            edge = litert_torch.convert(wrapped, (torch.zeros(1, size, size, 4),))
        out = work / "tflite.fp32.tflite"
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
        out = work / "generator.int8.tflite"
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


TARGETS = {t.name: t for t in (OnnxRuntimeTarget(), OpenVinoTarget(), TfliteTarget())}
