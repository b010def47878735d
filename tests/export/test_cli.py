"""`portrait export` / `python -m export`: help with every default, bad arguments exit 2 naming the option,
the unsigned warning first, the next steps last, the libraries' own output only with --verbose, telemetry
opted out; and the pipeline's interface rules (the contract's channels come from the checkpoint, one
`prepare_crops` for every generator input)."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from export import pipeline
from export.pipeline import (
    DEFAULT_INPUT_CHANNELS,
    DEFAULT_INPUT_MEANING,
    DEFAULT_TARGETS,
    build_parser,
    main,
    make_contract,
    next_steps,
    prepare_crops,
)
from export.quiet import QUIET_ENV, third_party_output
from export.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "models" / "checkpoints" / "default.pt"


# -- help and arguments ------------------------------------------------------------------------------


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser("python -m export")
    formatter = parser._get_formatter()
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} >= {"checkpoint", "out", "targets", "key", "verbose", "reduce_range"}
    for action in options:
        text = formatter._get_help_string(action)
        assert action.help and "(default" in text, action.option_strings


def test_help_lists_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for shown in (
        "(default: models/checkpoints/default.pt)",
        "(default: device/runtime/bundles/default,",
        f"(default: {' '.join(DEFAULT_TARGETS)})",
        "(default: skimage:astronaut)",
        "(default: 300)",
        "(default: 16)",
        "(default: 35.0)",
        "(default: 0.98)",
        "(default: none: the bundle is unsigned",
        "(default: 0.1.0)",
        "(default: on)",
        "(default: off)",
    ):
        assert shown in out, shown
    assert "--verbose" in out and "portrait fleet rollout" in out  # the epilog says what comes after


def test_portrait_export_help_names_itself(capsys, monkeypatch):
    from device import cli

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/portrait", "export", "--help"])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: portrait export ") and "(default: 300)" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--runs", "0"], "argument --runs: must be at least 1, not 0"),
        (["--calibration", "abc"], "argument --calibration: 'abc' is not a whole number"),
        (["--eval", "-3"], "argument --eval: must be at least 1"),
        (["--threads", "0"], "argument --threads"),
        (["--floor-ssim", "2"], "argument --floor-ssim: must be between 0 and 1"),
        (["--floor-psnr", "high"], "argument --floor-psnr"),
        (["--version", "1.0"], "argument --version: '1.0' is not a semantic version"),
        (["--name", "../escape"], "argument --name: '../escape' is not a plain name"),
        (["--targets", "tensorrt"], "argument --targets: invalid choice: 'tensorrt'"),
        (["--reduce-range", "maybe"], "argument --reduce-range: invalid choice: 'maybe'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_argument_exits_2_naming_it(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "usage:" in err


def test_a_missing_checkpoint_or_key_exits_2_naming_the_file(tmp_path, capfd):
    missing = tmp_path / "missing.pt"
    assert main(["--checkpoint", str(missing), "--out", str(tmp_path / "b")]) == 2
    assert f"checkpoint {missing} not found" in capfd.readouterr().err
    key = tmp_path / "nope.key"
    assert main(["--checkpoint", str(CHECKPOINT), "--key", str(key), "--out", str(tmp_path / "b")]) == 2
    assert f"signing key {key}" in capfd.readouterr().err
    assert not (tmp_path / "b").exists()


# -- the libraries' own output -----------------------------------------------------------------------


def _chatty_export(*_args, log, **_kwargs):
    """Stands in for export(): our lines through `log`, around what the libraries do on their own."""
    log("export: first line of ours")
    print("a library's print")
    sys.stderr.write("a progress bar on stderr\n")
    os.write(1, b"C++ log on fd 1\n")
    os.write(2, b"C++ log on fd 2\n")
    logger = logging.getLogger("nncf.test_cli")
    handler = logging.StreamHandler(sys.stderr)  # as NNCF and torch attach their own
    logger.addHandler(handler)
    try:
        logger.warning("NNCF warning")
    finally:
        logger.removeHandler(handler)
    warnings.warn("a deprecation", FutureWarning, stacklevel=1)
    log("export: last line of ours")
    return {}


CHATTER = ("a library's print", "a progress bar", "C++ log on fd 1", "C++ log on fd 2", "NNCF warning")


def test_library_output_is_quiet_by_default(monkeypatch, capfd, recwarn):
    monkeypatch.setattr(pipeline, "export", _chatty_export)
    assert main([]) == 0
    out, err = capfd.readouterr()
    assert out == "export: first line of ours\nexport: last line of ours\n"
    assert err == ""
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_verbose_shows_the_library_output(monkeypatch, capfd, recwarn):
    monkeypatch.setattr(pipeline, "export", _chatty_export)
    assert main(["--verbose"]) == 0
    out, err = capfd.readouterr()
    both = out + err
    assert out.index("first line of ours") < out.index("last line of ours")
    for chatter in CHATTER:
        assert chatter in both, chatter
    assert [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_quiet_restores_everything_on_the_way_out(capfd):
    logger = logging.getLogger("openvino")
    level, environment = logger.level, {k: os.environ.get(k) for k in QUIET_ENV}
    with pytest.raises(RuntimeError), third_party_output(verbose=False) as say:
        say("export: shown")
        os.write(2, b"hidden\n")
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and logger.level == logging.ERROR
        raise RuntimeError("a converter crashed")
    assert logger.level == level and {k: os.environ.get(k) for k in QUIET_ENV} == environment
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert out == "export: shown\n" and err == "after\n"


def test_openvino_and_nncf_telemetry_are_opted_out(tmp_path, monkeypatch):
    pytest.importorskip("openvino_telemetry")
    from export import opt_out_of_telemetry

    monkeypatch.setenv("HOME", str(tmp_path))
    opt_out_of_telemetry()
    assert (tmp_path / "intel" / "openvino_telemetry").read_text() == "0"  # what `opt_in_out --opt_out` writes


# -- the next steps ----------------------------------------------------------------------------------


def test_next_steps_of_an_unsigned_bundle_sign_then_roll_out(tmp_path):
    out = tmp_path / "my bundle"
    text = "\n".join(next_steps(out, None, "1.2.3"))
    quoted = f"'{out}'"  # shell-quoted: the commands can be pasted
    assert f"portrait fleet sign {quoted} --key keys/sign1.key" in text
    assert f"python -m tools.keys sign {quoted} --key" in text
    assert f"portrait fleet rollout {quoted} --key keys/sign1.key --cert keys/sign1.cert.json" in text
    assert f"portrait fleet unpublish {quoted}" in text and "1.2.3" in text
    assert text.index("fleet sign") < text.index("fleet rollout")


def test_next_steps_of_a_signed_bundle_use_its_key_and_certificate(tmp_path):
    out = tmp_path / "bundle"
    key = tmp_path / "sign1.key"
    (tmp_path / "sign1.cert.json").write_text("{}")  # as `portrait fleet keys signing` writes them
    text = "\n".join(next_steps(out, key, "0.1.0"))
    assert "fleet sign" not in text and "tools.keys sign" not in text
    assert f"portrait fleet rollout {out} --key {key} --cert {tmp_path / 'sign1.cert.json'}" in text

    bundle_key = tmp_path / "bundle.key"
    (tmp_path / "bundle.pub").write_text("")  # as `python -m tools.keys generate` writes them
    text = "\n".join(next_steps(out, bundle_key, "0.1.0"))
    assert f"python -m tools.keys verify {out} --pub {tmp_path / 'bundle.pub'}" in text


# -- the pipeline's interface rules ------------------------------------------------------------------


def test_the_contract_channels_come_from_the_checkpoint():
    talking = SimpleNamespace(input_channels=["red", "green", "blue", "repair_mask", "mouth"], input_meaning="m")
    entry = make_contract(talking, 64)["inputs"][0]
    assert entry["channels"] == talking.input_channels and entry["shape"] == [1, 5, 64, 64]
    assert entry["meaning"] == "m"
    still = make_contract(SimpleNamespace(), 64)["inputs"][0]  # a model that names none: today's four
    assert still["channels"] == DEFAULT_INPUT_CHANNELS and still["shape"] == [1, 4, 64, 64]
    assert still["meaning"] == DEFAULT_INPUT_MEANING


def test_one_target_table_drives_the_export():
    assert DEFAULT_TARGETS == tuple(TARGETS) == ("onnxruntime", "openvino", "tflite")
    for name, target in TARGETS.items():
        assert target.name == name and target.int8_file.startswith("generator.int8.")
        assert target.calibration({"reduce_range": True, "threads": 2})
    assert TARGETS["tflite"].layout == "NHWC" and TARGETS["onnxruntime"].layout == "NCHW"
    assert "reduce_range=False" in TARGETS["onnxruntime"].calibration({"reduce_range": False})


def test_prepare_crops_takes_clips_and_export_passes_them_on(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    clips = inspect.signature(prepare_crops).parameters["clips"]
    assert clips.kind is inspect.Parameter.KEYWORD_ONLY and clips.default is None
    calls = []

    def recording(sources, count, size, seed, *, clips=None, channels=None):
        calls.append((sources, count, size, seed, clips, channels))
        raise pipeline.BadInput("stop here")

    monkeypatch.setattr(pipeline, "prepare_crops", recording)
    with pytest.raises(pipeline.BadInput, match="stop here"):
        pipeline.export(CHECKPOINT, tmp_path / "b", ["onnxruntime"], clips=["talk.mp4"], size=64, log=lambda _: None)
    from models.generator import load_checkpoint

    channels = list(load_checkpoint(CHECKPOINT).input_channels)
    assert calls == [(["skimage:astronaut"], 300, 64, 0, ["talk.mp4"], channels)]


# -- one real run through the command line ----------------------------------------------------------


@pytest.mark.slow
def test_a_real_run_warns_first_and_ends_with_the_next_steps(tmp_path, capfd):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    out = tmp_path / "bundle"
    argv = ["--checkpoint", str(CHECKPOINT), "--out", str(out), "--targets", "onnxruntime", "--size", "64"]
    argv += ["--calibration", "2", "--eval", "1", "--runs", "1", "--floor-psnr", "0", "--floor-ssim", "0"]
    assert main(argv) == 0
    stdout, stderr = capfd.readouterr()
    lines = stdout.splitlines()
    assert "WARNING" in lines[0] and "unsigned" in lines[0]  # before any of the work
    assert sum("unsigned" in line and "WARNING" in line for line in lines) == 1  # not again at the end
    written = next(i for i, line in enumerate(lines) if line.startswith(f"export: bundle written to {out}"))
    steps = "\n".join(lines[written + 1 :])
    assert steps.startswith("export: next steps")
    assert f"portrait fleet sign {out} --key" in steps and f"portrait fleet rollout {out} --key" in steps
    assert all(line.startswith(("export: ", "|", "  ")) for line in lines), stdout  # nothing of the libraries'
    assert stderr == ""
    assert (out / "manifest.json").is_file() and not (out / "signature.json").exists()
