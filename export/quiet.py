"""The converters' and runtimes' own chatter, kept off the terminal unless `--verbose`.

An export drives PyTorch, ONNX Runtime, OpenVINO, NNCF, litert-torch and ai-edge-quantizer (TensorFlow
Lite and absl inside). Between them they print deprecation warnings, C++ log lines on file descriptor 2,
progress bars on stdout and stderr, and "Failed to load" notes for optional kernels: a screen of text
around the export's own dozen lines. `third_party_output(verbose=False)` sets their log levels and
environment switches to quiet, ignores Python warnings, and points file descriptors 1 and 2 (and
sys.stdout / sys.stderr) at a sink for its duration, so C++ output goes too; the export's own lines
go through the `say` it yields, to the real stdout. Everything is restored on the way out, also on an
exception (whose message and traceback are printed afterwards, on the real stderr).

    with third_party_output(verbose) as say:
        export(..., log=say)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator

# Read when the libraries load (set before the first import) or at each message.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow / LiteRT C++ logging: errors only
    "GLOG_minloglevel": "3",  # glog-style C++ logging
    "TQDM_DISABLE": "1",  # ai-edge-quantizer's calibration progress bar
}
QUIET_LOGGERS = (
    "torch",
    "torchao",
    "onnx",
    "onnxscript",
    "onnx_ir",
    "onnxruntime",
    "openvino",
    "nncf",
    "absl",
    "tensorflow",
    "litert_torch",
    "ai_edge_litert",
    "ai_edge_quantizer",
    "ai_edge_torch",
    "jax",
)


@contextlib.contextmanager
def third_party_output(verbose: bool = False) -> Iterator[Callable[[str], None]]:
    """Yields `say(line)`, which always reaches the real stdout; with verbose=False everything else
    printed or logged meanwhile (by any library, in Python or C++) is dropped."""
    out = sys.stdout
    if verbose:
        yield lambda line: print(line, file=out, flush=True)
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment(QUIET_ENV))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(_log_levels(QUIET_LOGGERS, logging.ERROR))
        shown = stack.enter_context(_descriptors_to_sink(out))
        sink = io.StringIO()
        stack.enter_context(contextlib.redirect_stdout(sink))
        stack.enter_context(contextlib.redirect_stderr(sink))
        yield lambda line: print(line, file=shown, flush=True)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _log_levels(names: tuple[str, ...], level: int) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)


@contextlib.contextmanager
def _descriptors_to_sink(out) -> Iterator:
    """Point fds 1 and 2 at a temporary file; yield a stream that still reaches what `out` reached."""
    try:
        out_fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        out_fd = None  # not a real file (a test's capture, an IDE console): `out` itself stays reachable
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no descriptors 1 and 2 to redirect (a daemon without them)
        yield out
        return
    shown = out
    if out_fd in (1, 2):
        shown = os.fdopen(os.dup(saved[out_fd - 1]), "w", encoding=getattr(out, "encoding", None) or "utf-8")
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield shown
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if shown is not out:
                shown.close()
