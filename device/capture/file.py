"""A camera made of files: one photo, a folder of photos, or a video. For tests and camera-less devices."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from device.capture.base import Camera, CameraError, CameraNotFound, to_rgb

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


def _read_photo(path: Path) -> np.ndarray:
    # IMREAD_COLOR applies the EXIF orientation and gives 3 channels for gray or 16-bit files too.
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        if not path.exists():
            raise CameraNotFound(f"{path}: no such file")
        raise CameraError(f"{path}: not a photo OpenCV can read")
    return to_rgb(image, "bgr")


class FileCamera(Camera):
    """Frames from `path`: a photo (the same frame each read), a sorted folder of photos, or a video.

    `loop` starts again at the end (otherwise read() returns None from then on); `fps` paces reads by
    sleeping until each frame is due, as a real camera blocks until its next frame.
    """

    live = False

    def __init__(self, path: str | Path, loop: bool = True, fps: float | None = None) -> None:
        self.path = Path(path)
        self.loop = loop
        self.fps = fps
        self.name = f"file:{self.path}"
        self._kind: str | None = None  # "photo", "folder" or "video" while open
        self._photo: np.ndarray | None = None
        self._files: list[Path] = []
        self._index = 0
        self._video: cv2.VideoCapture | None = None
        self._done = False
        self._due = 0.0

    def open(self) -> None:
        if self._kind is not None:
            return
        if self.path.is_dir():
            self._files = self._list_folder()
            self._kind = "folder"
        elif not self.path.exists():
            raise CameraNotFound(f"{self.path}: no such file or folder")
        elif self.path.suffix.lower() in PHOTO_SUFFIXES:
            # Decoded once: a photo camera serves the same frame many times a second.
            self._photo = _read_photo(self.path)
            self._kind = "photo"
        else:
            self._video = self._open_video()
            self._kind = "video"
        self._index = 0
        self._done = False
        self._due = time.monotonic()

    def read(self) -> np.ndarray | None:
        if self._kind is None:
            raise CameraError(f"{self.name} is not open")
        if self._done:
            return None
        frame = self._next_frame()
        if frame is None:
            self._done = True
            return None
        self._pace()
        return frame

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
        self._video = None
        self._photo = None
        self._files = []
        self._kind = None

    def _pace(self) -> None:
        if self.fps is None:
            return
        now = time.monotonic()
        if self._due > now:
            time.sleep(self._due - now)
            now = self._due
        # A late caller gets its frame now and the next one a period later: no catch-up burst.
        self._due = max(self._due, now) + 1.0 / self.fps

    def _next_frame(self) -> np.ndarray | None:
        if self._kind == "photo":
            assert self._photo is not None
            if self._index > 0 and not self.loop:
                return None
            self._index += 1
            # A copy, so a caller drawing on its frame does not change the next one.
            return self._photo.copy()
        if self._kind == "folder":
            if self._index >= len(self._files):
                if not self.loop:
                    return None
                # Listed again at each pass: photos dropped into the folder join the loop.
                self._files = self._list_folder()
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            return _read_photo(path)
        return self._next_video_frame()

    def _next_video_frame(self) -> np.ndarray | None:
        assert self._video is not None
        ok, frame = self._video.read()
        if not ok and self.loop:
            # Reopening is more reliable than seeking to frame 0 across codecs and containers.
            self._video.release()
            self._video = self._open_video()
            ok, frame = self._video.read()
        if not ok:
            return None
        return to_rgb(frame, "bgr")

    def _list_folder(self) -> list[Path]:
        if not self.path.is_dir():
            raise CameraNotFound(f"{self.path}: no such folder")
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
        if not files:
            raise CameraNotFound(f"{self.path}: no photos in this folder ({', '.join(sorted(PHOTO_SUFFIXES))})")
        return files

    def _open_video(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise CameraNotFound(f"{self.path}: no such file")
        video = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not video.isOpened():
            video.release()
            raise CameraError(f"{self.path}: neither a photo nor a video OpenCV can read")
        return video
