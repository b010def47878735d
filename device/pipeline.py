"""The one place that turns a request (photo + speech or motion source) into a rendered clip.

The CLI and the daemon both call `Animator.animate`; the daemon keeps one Animator alive so the
face models and the generator stay loaded and warm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.errors import BadInput

ProgressCallback = Callable[[int, int], None]  # (frames done, frames total)


@dataclass
class AnimateRequest:
    photo: Path | np.ndarray  # a file, or an RGB uint8 image already in memory (camera capture)
    out: Path  # .mp4 (or .mkv/.mov) file, or a folder for PNG frames
    text: str | None = None
    audio: Path | None = None
    transcript: str | None = None
    drive: Path | None = None  # driving video: expression and head motion transfer
    lang: str = "en"
    voice: str | None = None
    fps: int = 25
    size: int | None = None  # longest side of the output; None keeps the photo's resolution
    seconds: float | None = None  # clip length; default: the speech length, or 5 s of idle
    face: int = 0  # which face when there are several, largest first
    seed: int = 0  # idle motion (blinks, saccades) is random but reproducible
    backend: str = "auto"  # generator runtime; "none" renders with the warp alone
    max_pixels: int | None = None  # photos declaring more pixels are refused; None: the default (40 MP)


@dataclass
class AnimateResult:
    out: Path
    frames: int
    seconds: float
    render_fps: float
    wall_seconds: float
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {"p50": ms, "p95": ms}
    generator: str = "none"


IDLE_SECONDS = 5.0
SPEECH_TAIL_SECONDS = 0.4  # a breath of idle after the last word, so the clip does not cut mid-sound
MAX_SECONDS = 600.0


def even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def output_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """Output frame size: the photo's own (or longest side = `size`), made even for H.264."""
    scale = 1.0 if size is None else size / float(max(width, height))
    return even(width * scale), even(height * scale)


def prepare_photo(
    analyzer, photo: Path | np.ndarray, size: int | None = None, face: int = 0, max_pixels: int | None = None
) -> tuple[np.ndarray, object, str]:
    """Load the photo, analyse the chosen face at full resolution, then scale both to the output size.

    Returns (RGB image at output size, Face with landmarks in output pixels, the photo's name)."""
    import cv2

    from device.face.photo import DEFAULT_MAX_PIXELS, load_photo

    if isinstance(photo, np.ndarray):
        image, name = photo, "photo"
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise BadInput(f"photo: expected an RGB uint8 image, got {image.shape} {image.dtype}")
    else:
        image, name = load_photo(photo, max_pixels or DEFAULT_MAX_PIXELS), str(photo)
    found = analyzer.analyse(image, face=face, name=name)
    height, width = image.shape[:2]
    out_w, out_h = output_size(width, height, size)
    if (out_w, out_h) != (width, height):
        scale_x, scale_y = out_w / width, out_h / height
        interpolation = cv2.INTER_AREA if scale_x < 1 else cv2.INTER_CUBIC
        image = cv2.resize(image, (out_w, out_h), interpolation=interpolation)
        found.landmarks = found.landmarks * np.array([scale_x, scale_y, scale_x])
        if found.iris is not None:
            found.iris = found.iris * np.array([scale_x, scale_y])
        found.box = found.box * np.array([scale_x, scale_y, scale_x, scale_y])
    return image, found, name


class Animator:
    """Loads the face models and the generator once; renders any number of clips."""

    def __init__(self, backend: str = "auto", threads: int = 2, keys: list | None = None) -> None:
        """`keys`: public keys trusted for the model bundle, beyond the repository's (the daemon passes
        the fleet signing keys its updater has certified)."""
        from device.face.analysis import FaceAnalyzer
        from device.runtime import load_generator

        self.analyzer = FaceAnalyzer(threads)
        self.generator = load_generator(backend, keys=keys)
        self.backend = backend

    # --- inputs -------------------------------------------------------------------------------
    def prepare_photo(self, request: AnimateRequest) -> tuple[np.ndarray, object, str]:
        return prepare_photo(
            self.analyzer, request.photo, size=request.size, face=request.face, max_pixels=request.max_pixels
        )

    @staticmethod
    def prepare_speech(request: AnimateRequest):  # -> Speech | None
        if request.text is not None and request.audio is not None:
            raise BadInput("give either --text or --audio, not both")
        if request.transcript is not None and request.audio is None:
            raise BadInput("--transcript goes with --audio (it is the text spoken in the audio file)")
        if request.text is not None:
            from device.motion.tts import synthesize

            return synthesize(request.text, lang=request.lang, voice=request.voice)
        if request.audio is not None:
            from device.media.audio import load_audio
            from device.motion.align import align_audio
            from device.motion.speech import Speech

            audio, rate = load_audio(request.audio)
            phones = align_audio(audio, rate, request.transcript)
            return Speech(audio=audio, sample_rate=rate, phones=phones, text=request.transcript)
        return None

    # --- the clip -----------------------------------------------------------------------------
    def animate(
        self,
        request: AnimateRequest,
        progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> AnimateResult:
        import time

        from device.motion.timeline import motion_track
        from device.outputs.frames import open_writer
        from device.render.renderer import Renderer
        from device.timing import StageTimer

        validate_request(request)
        started = time.perf_counter()
        timer = StageTimer()
        with timer.stage("face_analysis"):
            image, face, _ = self.prepare_photo(request)
        with timer.stage("speech"):
            speech = self.prepare_speech(request)

        drive = None
        if request.drive is not None:
            from device.motion.drive import drive_track

            with timer.stage("drive_analysis"):
                drive = drive_track(Path(request.drive), self.analyzer, request.fps)

        if request.seconds is not None:
            seconds = request.seconds
        elif speech is not None:
            seconds = speech.duration + SPEECH_TAIL_SECONDS
        elif drive is not None:
            seconds = len(drive) / request.fps
        else:
            seconds = IDLE_SECONDS
        n_frames = max(1, round(seconds * request.fps))
        if drive is not None and len(drive) != n_frames:
            index = np.minimum(np.arange(n_frames), len(drive) - 1)
            drive = drive[index]

        track = motion_track(n_frames, request.fps, speech=speech, drive=drive, seed=request.seed)
        renderer = Renderer(image, face, close_mouth_at_rest=speech is not None, generator=self.generator, timer=timer)
        height, width = image.shape[:2]
        audio = None if speech is None else speech.audio
        rate = None if speech is None else speech.sample_rate
        from device.motion.params import FaceParams

        render_start = time.perf_counter()
        with open_writer(Path(request.out), request.fps, width, height, audio=audio, sample_rate=rate) as writer:
            for index in range(n_frames):
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"cancelled after {index} of {n_frames} frames")
                with timer.stage("frame"):
                    frame = renderer.render(FaceParams.from_array(track[index]))
                    with timer.stage("encode"):
                        writer.write(frame)
                if progress is not None:
                    progress(index + 1, n_frames)
        render_seconds = time.perf_counter() - render_start
        return AnimateResult(
            out=Path(request.out),
            frames=n_frames,
            seconds=n_frames / request.fps,
            render_fps=n_frames / max(render_seconds, 1e-9),
            wall_seconds=time.perf_counter() - started,
            timings=timer.summary(),
            generator=getattr(self.generator, "name", "none") if self.generator is not None else "none",
        )


class Cancelled(Exception):
    """The caller asked to stop; nothing is left at the output path."""


def validate_request(request: AnimateRequest) -> None:
    if not isinstance(request.fps, int) or not 1 <= request.fps <= 60:
        raise BadInput(f"--fps {request.fps}: must be a whole number from 1 to 60")
    if request.size is not None and not 64 <= request.size <= 4096:
        raise BadInput(f"--size {request.size}: must be from 64 to 4096 pixels")
    if request.seconds is not None and not 0 < request.seconds <= MAX_SECONDS:
        raise BadInput(f"--seconds {request.seconds}: must be more than 0 and at most {MAX_SECONDS:.0f}")
    if request.face < 0:
        raise BadInput(f"--face {request.face + 1}: faces are numbered from 1 (largest first)")
    if request.text is not None and not request.text.strip():
        raise BadInput("--text: is empty")
