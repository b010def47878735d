"""The export toolchain: PyTorch checkpoint -> ONNX FP32 -> INT8 for ONNX Runtime, OpenVINO and
TFLite, validated and benchmarked in the same run, written as a signed model bundle.

    python -m export --checkpoint models/checkpoints/default.pt --out device/runtime/bundles/default \
        --photos DIR --holdout skimage:astronaut --key ~/.config/portrait/keys/bundle.key

`export.pipeline.export(...)` is the same as a function (for `portrait export`); the command line runs it
inside `export.quiet.third_party_output`, which keeps the libraries' own output off the terminal unless
`--verbose`.
"""

import contextlib


def opt_out_of_telemetry() -> None:
    """OpenVINO tools and NNCF send telemetry through openvino-telemetry unless its consent file says
    no: this is the programmatic `opt_in_out --opt_out`, run before either is imported."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return
    # No writable home: no consent file, and without consent nothing is sent.
    with contextlib.suppress(Exception):
        OptInChecker().update_result(ConsentCheckResult.DECLINED)
