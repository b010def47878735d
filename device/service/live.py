"""The live render loop on the kiosk: the portrait idling (and looking at the visitor) and speaking
its playlist, the capture-mode preview, and the mirror that follows the visitor's face in real time.

It plugs into the daemon as its `LiveStage` (device.service.modes) and runs in its own thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device.config import AppConfig, Mode, Script
from device.logs import kv
from device.motion.idle import COLUMN, IdleMotion
from device.motion.params import SPEECH_CHANNELS, FaceParams
from device.service.modes import StageHooks

log = logging.getLogger(__name__)

IDLE_CHUNK_S = 120.0  # idle motion is generated in chunks and cross-faded at the seams
CROSSFADE_S = 0.5
CAMERA_EVERY = 2  # portrait mode looks for visitors on every 2nd frame: enough, and cheaper
GAZE_SMOOTHING = 0.85
CAPTURE_KEYS = (32, 13)  # space, Enter: a USB button or keyboard on the kiosk


class LiveRenderer:
    """One live stage per daemon. Frames go to the kiosk display; headless, mirror mode still runs
    (its frame rate and latency are reported in the stats) and portrait mode renders nothing."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._scripts: queue.Queue[Script] = queue.Queue(maxsize=4)
        self._clips: queue.Queue[Path] = queue.Queue(maxsize=4)
        self._camera = None
        self._last_camera_frame: np.ndarray | None = None
        self.latencies_ms: deque[float] = deque(maxlen=2000)  # camera frame -> displayed frame (mirror)
        self.mode: Mode | None = None
        # Called with every displayed frame (recording, tests); must be quick.
        self.frame_listeners: list[Callable[[np.ndarray], None]] = []

    # --- LiveStage --------------------------------------------------------------------------
    def start(self, mode: Mode, config: AppConfig, hooks: StageHooks) -> None:
        self.stop()
        self.mode, self.config, self.hooks = mode, config, hooks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_safely, name=f"live-{mode}", daemon=True)
        self._thread.start()

    @property
    def live_output(self) -> bool:
        """Whether `play` is heard and seen on the device (else a script is rendered to a clip)."""
        return self.config.output.display != "off"

    def play(self, script: Script) -> None:
        try:
            self._scripts.put_nowait(script)
        except queue.Full:
            self.hooks.emit("warning", {"message": "script dropped: four scripts are already waiting"})

    def show_clip(self, clip: Path) -> None:
        """Capture mode: play a finished visitor clip on the kiosk screen, then back to the preview."""
        try:
            self._clips.put_nowait(Path(clip))
        except queue.Full:
            self.hooks.emit("warning", {"message": f"clip not shown: four are already waiting ({clip.name})"})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def grab_photo(self) -> np.ndarray | None:
        """The latest camera frame, for a capture command (the live loop owns the camera)."""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            frame = self._last_camera_frame
            if frame is not None:
                return frame.copy()
            if self._thread is None or not self._thread.is_alive():
                break
            if self._camera is not None and self.mode == "mirror":
                break  # the mirror reads every frame; nothing came, the camera is down
            time.sleep(0.02)
        return None

    # --- the thread -------------------------------------------------------------------------
    def _run_safely(self) -> None:
        from device.outputs.display import Display

        display = Display(self.config.output.display)
        try:
            self._camera = self._open_camera()
            if self.mode == "mirror":
                self._mirror(display)
            elif self.mode == "capture":
                self._preview(display)
            elif display.on_screen or self.config.camera is not None:
                self._portrait(display)
        except Exception as error:  # the daemon keeps serving jobs; the stage reports and stops
            log.exception("live stage failed")
            self.hooks.emit("warning", {"message": f"live {self.mode} stopped: {error}"})
        finally:
            if self._camera is not None:
                self._camera.close()
                self._camera = None
            display.close()

    def _open_camera(self):
        if self.config.camera is None:
            return None
        from device.capture import ResilientCamera, open_camera

        camera = ResilientCamera(
            open_camera(self.config.camera), on_event=lambda kind, detail: self.hooks.emit(kind, detail)
        )
        camera.open()
        return camera

    def _analyzer(self):
        animator = self.hooks.renderer()
        if animator is not None and hasattr(animator, "analyzer"):
            return animator.analyzer
        from device.face.analysis import FaceAnalyzer

        return FaceAnalyzer()

    def _renderer(self, photo: Path | None, close_mouth: bool):
        from device import assets
        from device.pipeline import prepare_photo
        from device.render.renderer import Renderer

        photo = photo or assets.sample_portrait()
        image, face, _ = prepare_photo(self._analyzer(), photo, size=self.config.output.size)
        animator = self.hooks.renderer()
        generator = getattr(animator, "generator", None)
        # The same whole-head motion as a rendered clip, when the renderer can say where the person is.
        person_mask = getattr(animator, "person_mask", None)
        person = person_mask(image) if callable(person_mask) else None
        return Renderer(image, face, close_mouth_at_rest=close_mouth, generator=generator, person_mask=person)

    def _read_camera(self) -> np.ndarray | None:
        if self._camera is None:
            return None
        frame = self._camera.read()
        if frame is not None:
            self._last_camera_frame = frame
        return frame

    def _show(self, display, frame: np.ndarray) -> int:
        key = display.show(frame)
        for listener in self.frame_listeners:
            listener(frame)
        return key

    def _record(self, renderer, started: float) -> None:
        frame_ms = (time.perf_counter() - started) * 1000.0
        generator = renderer.timer.samples.get("generator")
        self.hooks.metrics.record_frame(frame_ms, generator[-1] if generator else None)

    # --- portrait: idle, visitor gaze, playlist ------------------------------------------------
    def _portrait(self, display) -> None:
        config = self.config
        renderer = self._renderer(config.portrait.photo, close_mouth=False)
        fps = config.output.fps
        idle = _IdleStream(fps, seed=int(time.time()))
        gaze = np.zeros(2)
        speaking: tuple[np.ndarray, float] | None = None  # (mouth track, start time)
        preparing: list[Any] = []
        mirror_camera = bool(config.camera is not None and config.camera.mirror)
        next_tick = time.perf_counter()
        frame_index = 0
        analyzer = self._analyzer()
        while not self._stop.is_set():
            started = time.perf_counter()
            if speaking is None and not preparing and not self._scripts.empty():
                preparing.append(_SpeechJob(self._scripts.get_nowait(), self.hooks, fps))
            if preparing and preparing[0].ready.is_set():
                job = preparing.pop()
                if job.track is not None:
                    speaking = (job.track, time.perf_counter())
                    job.start_audio()
            if self._camera is not None and frame_index % CAMERA_EVERY == 0:
                frame = self._read_camera()
                if frame is not None:
                    target = _visitor_gaze(analyzer, frame, mirror_camera)
                    self.hooks.face_seen(target is not None)
                    goal = target if target is not None else np.zeros(2)
                    gaze = GAZE_SMOOTHING * gaze + (1 - GAZE_SMOOTHING) * goal
            params = idle.next()
            params[COLUMN["gaze_x"]] = np.clip(0.35 * params[COLUMN["gaze_x"]] + gaze[0], -1, 1)
            params[COLUMN["gaze_y"]] = np.clip(0.35 * params[COLUMN["gaze_y"]] + gaze[1], -1, 1)
            # A visitor is looked at with the head as well as the eyes, as people do.
            params[COLUMN["head_yaw"]] += 4.0 * gaze[0]
            params[COLUMN["head_pitch"]] += 3.0 * gaze[1]
            if speaking is not None:
                track, start = speaking
                # The sound reaches the room audio_latency_ms after playback starts; the mouth goes with it.
                heard = time.perf_counter() - start - config.output.audio_latency_ms / 1000.0
                index = round(heard * fps)
                if index >= len(track):
                    speaking = None
                    self.hooks.emit("script.done", {})
                elif index >= 0:
                    for channel, name in enumerate(SPEECH_CHANNELS):
                        params[COLUMN[name]] = track[index, channel]
            self._show(display, renderer.render(FaceParams.from_array(params)))
            self._record(renderer, started)
            frame_index += 1
            next_tick += 1.0 / fps
            delay = next_tick - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0 / fps:
                self.hooks.metrics.record_dropped(int(-delay * fps))
                next_tick = time.perf_counter()

    # --- capture mode: the camera as a mirror, so visitors can frame themselves -----------------
    def _preview(self, display) -> None:
        analyzer = self._analyzer()
        while not self._stop.is_set():
            if not self._clips.empty():
                self._play_clip(display, self._clips.get_nowait())
                continue
            frame = self._read_camera()
            if frame is None:
                self._stop.wait(0.02)
                continue
            self.hooks.face_seen(bool(analyzer.detect(frame)))
            if self._show(display, frame) in CAPTURE_KEYS:
                self._capture_from_key()

    def _play_clip(self, display, clip: Path) -> None:
        from device.media.audio import load_audio
        from device.media.video import probe_video, read_frames
        from device.outputs.speaker import play_async

        try:
            fps = probe_video(clip).fps or 25.0
            audio, rate = load_audio(clip)
        except Exception as error:  # a clip without audio still plays
            audio, rate, fps = None, 0, 25.0
            log.info("clip audio not played: %s", error)
        if audio is not None:
            play_async(audio, rate)
        started, shown = time.perf_counter(), 0
        for index, frame in enumerate(read_frames(clip)):
            if self._stop.is_set():
                return
            self._show(display, frame)
            shown += 1
            delay = started + (index + 1) / fps - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
        self.hooks.emit("clip.shown", {"clip": clip.name, "frames": shown})

    def _capture_from_key(self) -> None:
        """The kiosk's button (space or Enter on its keyboard) does what the MQTT `capture` command does."""
        capture = self.hooks.capture
        if capture is None:
            return

        def run() -> None:
            try:
                capture()
            except Exception as error:  # reported like a failed command; the preview goes on
                self.hooks.emit("warning", {"message": f"capture by key failed: {error}"})

        threading.Thread(target=run, name="capture-key", daemon=True).start()

    # --- mirror: expression transfer from the live camera --------------------------------------
    def _mirror(self, display) -> None:
        from device.motion.drive import ExpressionTracker

        renderer = self._renderer(self.config.mirror.photo or self.config.portrait.photo, close_mouth=False)
        from device.face.topology import mouth_opening

        rest = mouth_opening(renderer.face.landmarks)
        tracker = ExpressionTracker(self._analyzer(), smoothing=0.2, rest_opening=rest)
        while not self._stop.is_set():
            frame = self._read_camera()
            if frame is None:
                self._stop.wait(0.005)
                continue
            captured = time.perf_counter()
            params = tracker.update(frame)
            self.hooks.face_seen(tracker.previous is not None)
            self._show(display, renderer.render(FaceParams.from_array(params), tracker.shape))
            self._record(renderer, captured)
            self.latencies_ms.append((time.perf_counter() - captured) * 1000.0)


class _IdleStream:
    """Endless idle motion: chunks of generated motion, cross-faded where they meet."""

    def __init__(self, fps: int, seed: int) -> None:
        self.fps, self.seed = fps, seed
        self.chunk = IdleMotion(seed).track(int(IDLE_CHUNK_S * fps), fps)
        self.position = 0

    def next(self) -> np.ndarray:
        fade = int(CROSSFADE_S * self.fps)
        if self.position >= len(self.chunk) - fade:
            self.seed += 1
            following = IdleMotion(self.seed).track(int(IDLE_CHUNK_S * self.fps), self.fps)
            weights = np.linspace(0, 1, fade)[:, None]
            following[:fade] = (1 - weights) * self.chunk[-fade:] + weights * following[:fade]
            self.chunk, self.position = following, 0
        row = self.chunk[self.position].copy()
        self.position += 1
        return row


class _SpeechJob:
    """Synthesis off the render thread (a sentence takes a few hundred ms), then audio playback."""

    def __init__(self, script: Script, hooks: StageHooks, fps: int) -> None:
        self.script, self.hooks, self.fps = script, hooks, fps
        self.ready = threading.Event()
        self.track: np.ndarray | None = None
        self.speech = None
        threading.Thread(target=self._prepare, daemon=True).start()

    def _prepare(self) -> None:
        from device.motion.visemes import speech_track
        from device.pipeline import AnimateRequest, Animator

        try:
            request = AnimateRequest(
                photo=Path("unused"), out=Path("unused"), text=self.script.text, audio=self.script.audio,
                transcript=self.script.transcript, lang=self.script.lang, voice=self.script.voice,
            )  # fmt: skip
            self.speech = Animator.prepare_speech(request)
            fps = self.fps
            frames = int(np.ceil(self.speech.duration * fps)) + 1
            self.track = speech_track(self.speech.phones, fps, frames)
            self.hooks.emit("script.speaking", {"text": self.script.text, "seconds": round(self.speech.duration, 2)})
        except Exception as error:
            self.hooks.emit("warning", {"message": f"script failed: {error}"})
        finally:
            self.ready.set()

    def start_audio(self) -> None:
        if self.speech is not None:
            from device.outputs.speaker import play_async

            play_async(self.speech.audio, self.speech.sample_rate)


def _visitor_gaze(analyzer, frame: np.ndarray, mirrored: bool) -> np.ndarray | None:
    """Where the portrait should look to meet the visitor's eyes, from the visitor's face position."""
    import cv2

    scale = 320.0 / max(frame.shape[:2])
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
    detections = analyzer.detect(small)
    if not detections:
        return None
    box = detections[0].box
    height, width = small.shape[:2]
    x = ((box[0] + box[2]) / 2 / width) * 2 - 1
    y = ((box[1] + box[3]) / 2 / height) * 2 - 1
    # The camera faces the visitor: unmirrored, a visitor on the camera image's right stands to the
    # portrait's right, which is the portrait image's left.
    return np.array([x if mirrored else -x, 0.5 * y]) * 0.8


def default_stage() -> LiveRenderer:
    return LiveRenderer()


__all__ = ["LiveRenderer", "default_stage", "kv"]
