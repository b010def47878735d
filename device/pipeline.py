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
    speak_symbols: bool = False  # read emoji and other pictographs aloud by name (eSpeak's default)
    overwrite: bool = False  # replace what is already at `out` (file or folder); else BadInput
    drive_audio: bool = True  # a --drive video's own sound track goes into the clip (when there is no speech)


@dataclass
class AnimateResult:
    out: Path
    frames: int
    seconds: float
    render_fps: float
    wall_seconds: float
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {"p50": ms, "p95": ms}
    generator: str = "none"
    speech_timing: str | None = None  # where the mouth's timing came from (see device.motion.recording)
    warnings: list[str] = field(default_factory=list)


IDLE_SECONDS = 5.0
SPEECH_TAIL_SECONDS = 0.4  # a breath of idle after the last word, so the clip does not cut mid-sound
MAX_SECONDS = 600.0


def even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


# Without --size the clip keeps the photo's size up to this long side: a kiosk screen's (1920x1080 or
# 1080x1920). A 12000x9000 photo rendered at its own size costs seconds a frame and shows nothing more.
DEFAULT_MAX_SIDE = 1920


def output_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """Output frame size: the photo's own capped at DEFAULT_MAX_SIDE (or longest side = `size`), even."""
    if size is None and max(width, height) > DEFAULT_MAX_SIDE:
        size = DEFAULT_MAX_SIDE
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

    def __init__(
        self, backend: str = "auto", threads: int = 2, keys: list | None = None, options: dict | None = None
    ) -> None:
        """`keys`: public keys trusted for the model bundle, beyond the repository's (the daemon passes
        the fleet signing keys its updater has certified). `options`: each runtime's settings (the
        config's generator.<runtime> tables; see device.runtime.load_generator). `threads` is the face
        models'; the generator's threads come from its runtime's settings."""
        from device.face.analysis import FaceAnalyzer
        from device.runtime import load_generator

        self.analyzer = FaceAnalyzer(threads)
        self.generator = load_generator(backend, keys=keys, options=options)
        self.backend = backend
        self.threads = threads
        self.segmenter = None  # loaded with the first photo

    # --- inputs -------------------------------------------------------------------------------
    def prepare_photo(self, request: AnimateRequest) -> tuple[np.ndarray, object, str]:
        return prepare_photo(
            self.analyzer, request.photo, size=request.size, face=request.face, max_pixels=request.max_pixels
        )

    def person_mask(self, image: np.ndarray) -> np.ndarray:
        """Where the person is in the photo, so the whole head moves over a still background."""
        if self.segmenter is None:
            from device.face.segment import PersonSegmenter

            self.segmenter = PersonSegmenter(self.threads)
        return self.segmenter.mask(image)

    @staticmethod
    def prepare_speech(request: AnimateRequest):  # -> Speech | None
        if request.text is not None and request.audio is not None:
            raise BadInput("give either --text or --audio, not both")
        if request.transcript is not None and request.audio is None:
            raise BadInput("--transcript goes with --audio (it is the text spoken in the audio file)")
        if request.text is not None:
            from device.motion.tts import synthesize

            return synthesize(request.text, lang=request.lang, voice=request.voice, speak_symbols=request.speak_symbols)
        if request.audio is not None:
            from device.media.audio import load_audio
            from device.motion.recording import speech_from_recording

            # The clip holds the speech and a breath after it: the speech itself must leave room for that.
            audio, rate = load_audio(request.audio, max_seconds=MAX_SECONDS - SPEECH_TAIL_SECONDS)
            return speech_from_recording(audio, rate, request.transcript, request.lang, f"audio file {request.audio}")
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
        warnings: list[str] = []
        with timer.stage("face_analysis"):
            image, face, name = self.prepare_photo(request)
            if request.size is None and max(image.shape[:2]) == DEFAULT_MAX_SIDE:
                warnings.append(
                    f"{name}: rendered at {image.shape[1]}x{image.shape[0]}, a long side of {DEFAULT_MAX_SIDE} "
                    "(the photo is larger; --size sets another size)"
                )
        with timer.stage("segmentation"):
            person = self.person_mask(image)
        with timer.stage("speech"):
            speech = self.prepare_speech(request)

        drive = None
        if request.drive is not None:
            from device.face.topology import mouth_opening
            from device.motion.drive import read_performance

            with timer.stage("drive_analysis"):
                rest = mouth_opening(face.landmarks)
                drive = read_performance(Path(request.drive), self.analyzer, request.fps, rest_opening=rest)

        if request.seconds is not None:
            seconds = request.seconds
        elif speech is not None:
            seconds = speech.duration + SPEECH_TAIL_SECONDS
        elif drive is not None:
            seconds = len(drive) / request.fps
        else:
            seconds = IDLE_SECONDS
        n_frames = max(1, round(seconds * request.fps))
        shapes = None
        if drive is not None:
            index = np.minimum(np.arange(n_frames), len(drive) - 1)
            # Speech owns the mouth when both are given: the performer's face shape would fight it.
            shapes = None if speech is not None else drive.shapes[index]
            drive = drive.params[index]

        track = motion_track(n_frames, request.fps, speech=speech, drive=drive, seed=request.seed)
        renderer = Renderer(image, face, generator=self.generator, timer=timer, person_mask=person)
        height, width = image.shape[:2]
        audio = None if speech is None else speech.audio
        rate = None if speech is None else speech.sample_rate
        if audio is None and request.drive is not None and request.drive_audio:
            audio, rate = drive_audio(Path(request.drive), n_frames / request.fps)
        from device.motion.params import FaceParams

        render_start = time.perf_counter()
        with open_writer(
            Path(request.out), request.fps, width, height, audio=audio, sample_rate=rate, overwrite=request.overwrite
        ) as writer:
            for index in range(n_frames):
                if should_cancel is not None and should_cancel():
                    raise Cancelled(f"cancelled after {index} of {n_frames} frames")
                with timer.stage("frame"):
                    shape = None if shapes is None else shapes[index]
                    frame = renderer.render(FaceParams.from_array(track[index]), shape)
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
            speech_timing=None if speech is None else speech.timing,
            warnings=warnings + ([speech.warning] if speech is not None and speech.warning else []),
        )


def drive_audio(path: Path, seconds: float) -> tuple[np.ndarray | None, int | None]:
    """The driving video's own sound, cut to the clip; (None, None) when it has none."""
    from device.media.audio import load_audio
    from device.media.video import probe_video

    if not probe_video(path).has_audio:
        return None, None
    audio, rate = load_audio(path)
    return audio[: int(seconds * rate)], rate


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
