"""`portrait`: one command, subcommands for each job.

Exit codes: 0 ok, 2 bad input (the message names the file or value and what is wrong), 1 internal error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from device import __version__
from device.errors import BadInput, PortraitError
from device.runtime import BACKENDS


class _RuntimeChoice(argparse.Action):
    """`--backend NAME`, one of the runtime registry's names (device.runtime.BACKENDS), checked as it is
    parsed: a misspelt name exits 2 before any model loads. `append=True` collects repeated options."""

    def __init__(self, option_strings, dest, names: tuple[str, ...] = BACKENDS, append: bool = False, **kwargs):
        self.names, self.append = names, append
        kwargs.setdefault("metavar", "{" + ",".join(names) + "}")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        if value not in self.names:
            parser.error(f"{option_string} {value}: unknown; choose one of {', '.join(self.names)}")
        if self.append:
            value = [*(getattr(namespace, self.dest, None) or []), value]
        setattr(namespace, self.dest, value)


def _progress_printer(enabled: bool, label: str):
    """A one-line progress bar on a terminal; silent when output goes to a file or a pipe."""
    started = time.perf_counter()

    def show(done: int, total: int) -> None:
        if not enabled:
            return
        elapsed = max(time.perf_counter() - started, 1e-6)
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0.0
        sys.stderr.write(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} frames"
            f"  {rate:5.1f} fps  eta {eta:4.1f}s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def cmd_setup(args: argparse.Namespace) -> int:
    from device import assets

    assets.setup(force=args.force, wheel=Path(args.wheel) if args.wheel else None)
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from device import assets
    from device.outputs.frames import check_output
    from device.pipeline import AnimateRequest, Animator

    out = Path(args.out)
    check_output(out, args.overwrite)  # before the models load and the render runs, not after it
    photo = Path(args.photo) if args.photo else assets.sample_portrait()
    request = AnimateRequest(
        photo=photo,
        out=out,
        text=args.text,
        audio=Path(args.audio) if args.audio else None,
        transcript=args.transcript,
        drive=Path(args.drive) if args.drive else None,
        lang=args.lang,
        voice=args.voice,
        fps=args.fps,
        size=args.size,
        seconds=args.seconds,
        face=args.face - 1,
        seed=args.seed,
        backend=args.backend,
        speak_symbols=args.speak_symbols,
        drive_audio=not args.no_drive_audio,
        overwrite=args.overwrite,
    )
    animator = Animator(backend=args.backend, threads=args.threads)
    show_progress = sys.stderr.isatty() and not args.json and not args.quiet
    result = animator.animate(request, progress=_progress_printer(show_progress, out.name))
    summary = {
        "out": str(result.out),
        "photo": str(photo),
        "frames": result.frames,
        "seconds": round(result.seconds, 3),
        "fps": request.fps,
        "render_fps": round(result.render_fps, 1),
        "wall_seconds": round(result.wall_seconds, 3),
        "generator": result.generator,
        "speech_timing": result.speech_timing,
        "warnings": result.warnings,
        "timings_ms": result.timings,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(
            f"wrote {result.out}: {result.frames} frames, {result.seconds:.2f} s, "
            f"rendered at {result.render_fps:.1f} fps in {result.wall_seconds:.2f} s wall"
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from device.bench import run_bench

    return run_bench(
        photo=Path(args.photo) if args.photo else None,
        size=args.size,
        frames=args.frames,
        text=args.text,
        backends=args.backend,
        as_json=args.json,
        threads=args.threads,
    )


def cmd_languages(args: argparse.Namespace) -> int:
    from device.motion.tts import list_languages, list_voices

    for name in list_voices() if args.voices else list_languages():
        print(name)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from export.pipeline import main as export_main
    except ImportError as error:
        raise PortraitError(
            f"the export toolchain is not installed ({error}): pip install 'talking-portrait[export]'"
        ) from error
    return export_main(args.export_args)


def cmd_fleet(args: argparse.Namespace) -> int:
    from device.fleet import main as fleet_main

    return int(fleet_main(args.fleet_args) or 0)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from device.service.daemon import serve
    except ImportError as error:  # pragma: no cover - the daemon ships with the package
        raise PortraitError(f"the daemon is not available: {error}") from error
    return serve(Path(args.config), check_only=args.check_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portrait", description="Talking Portrait appliance")
    parser.add_argument("--version", action="version", version=f"portrait {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    setup = sub.add_parser("setup", help="install the face models and the sample portrait (once, needs PyPI)")
    setup.add_argument("--force", action="store_true", help="reinstall even if present")
    setup.add_argument("--wheel", help="use this mediapipe-0.10.21 wheel file instead of downloading it")
    setup.set_defaults(func=cmd_setup)

    animate = sub.add_parser("animate", help="render a talking, blinking, moving clip of a portrait")
    animate.add_argument("photo", nargs="?", help="portrait photo (default: the sample portrait)")
    speech = animate.add_mutually_exclusive_group()
    speech.add_argument("--text", help="what the portrait says (text-to-speech)")
    speech.add_argument("--audio", help="speech recording to lip-sync (WAV/MP3/FLAC/...)")
    animate.add_argument("--transcript", help="the words spoken in --audio (better timing)")
    animate.add_argument(
        "--drive", help="driving video: transfer its face's expression and head motion (and its sound)"
    )
    animate.add_argument(
        "--no-drive-audio", action="store_true", help="leave the driving video's sound out of the clip"
    )
    animate.add_argument(
        "--lang",
        default="en",
        help="eSpeak NG language of --text, or of the speech in --audio (default: en); see `portrait languages`",
    )
    animate.add_argument("--speak-symbols", action="store_true", help="read emoji and other pictographs aloud by name")
    animate.add_argument("--voice", help="eSpeak NG voice variant")
    animate.add_argument("--fps", type=int, default=25, help="frames per second (default: 25)")
    animate.add_argument("--size", type=int, help="longest side of the output in pixels (default: the photo's)")
    animate.add_argument("--seconds", type=float, help="clip length (default: the speech, or 5 s of idle)")
    animate.add_argument("--face", type=int, default=1, help="which face, 1 = largest (default: 1)")
    animate.add_argument("--seed", type=int, default=0, help="seed of the idle motion (blinks, glances)")
    animate.add_argument(
        "--backend", default="auto", action=_RuntimeChoice, help="generator runtime ('none': warp only; default: auto)"
    )
    animate.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 2), help="CPU threads for models")
    animate.add_argument("--out", default="portrait.mp4", help="output .mp4/.mkv/.mov, or a folder for PNG frames")
    animate.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file, or the frames in an existing --out folder (else exit 2)",
    )
    animate.add_argument("--json", action="store_true", help="print a machine-readable summary")
    animate.add_argument("--quiet", action="store_true", help="print nothing on success")
    animate.set_defaults(func=cmd_animate)

    bench = sub.add_parser("bench", help="per-stage p50/p95 ms and end-to-end fps for each runtime")
    bench.add_argument("photo", nargs="?", help="portrait photo (default: the sample portrait)")
    bench.add_argument("--size", type=int, default=512, help="output size (default: 512)")
    bench.add_argument("--frames", type=int, default=250, help="frames to render per runtime (default: 250)")
    bench.add_argument("--text", default="The quick brown fox jumps over the lazy dog, and my portrait speaks.")
    bench.add_argument(
        "--backend",
        action=_RuntimeChoice,
        names=BACKENDS[1:],
        append=True,
        help="runtime to measure, repeatable (default: every installed one)",
    )
    bench.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 2))
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)

    languages = sub.add_parser("languages", help="list the eSpeak NG languages (or voices) for --lang/--voice")
    languages.add_argument("--voices", action="store_true", help="list voice variants instead")
    languages.set_defaults(func=cmd_languages)

    export = sub.add_parser(
        "export",
        help="quantize the generator to INT8 bundles (needs the export extra; --help for its options)",
        add_help=False,
    )
    export.add_argument("export_args", nargs=argparse.REMAINDER)
    export.set_defaults(func=cmd_export)

    fleet = sub.add_parser(
        "fleet", help="operator side: keys, sign, publish, rollout, status, rollback", add_help=False
    )
    fleet.add_argument("fleet_args", nargs=argparse.REMAINDER)
    fleet.set_defaults(func=cmd_fleet)

    serve = sub.add_parser("serve", help="run the appliance daemon (systemd starts exactly this)")
    serve.add_argument("--config", required=True, help="TOML config file")
    serve.add_argument("--check-config", action="store_true", help="validate the config and exit")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv[:1] == ["export"]:
        # The export toolchain parses its own options (argparse's REMAINDER drops a leading --help).
        args = argparse.Namespace(func=cmd_export, export_args=argv[1:])
    elif argv[:1] == ["fleet"]:
        args = argparse.Namespace(func=cmd_fleet, fleet_args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BadInput as error:
        print(f"portrait: error: {error}", file=sys.stderr)
        return error.exit_code
    except PortraitError as error:
        print(f"portrait: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("portrait: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an internal error: say what, without a wall of traceback
        print(f"portrait: internal error: {error.__class__.__name__}: {error}", file=sys.stderr)
        if os.environ.get("PORTRAIT_DEBUG"):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
