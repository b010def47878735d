"""The kiosk screen: an OpenCV highgui window (fullscreen for a kiosk), or nothing when the device
has no display (a headless box, a test machine)."""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Display:
    """`show(frame)` puts an RGB frame on screen; headless it only counts frames."""

    def __init__(self, mode: str = "off", title: str = "portrait") -> None:
        self.mode = mode
        self.title = title
        self.frames = 0
        self.window = False
        if mode != "off":
            if not display_available():
                log.warning("display requested but there is no screen (no DISPLAY): running headless")
            else:
                import cv2

                try:
                    cv2.namedWindow(title, cv2.WINDOW_NORMAL)
                    if mode == "fullscreen":
                        cv2.setWindowProperty(title, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
                    self.window = True
                except cv2.error as error:  # an OpenCV build without highgui (headless wheel)
                    log.warning("cannot open a window (%s): running headless", error)

    @property
    def on_screen(self) -> bool:
        return self.window

    def show(self, frame: np.ndarray) -> int:
        """Show a frame; returns the key pressed on the kiosk keyboard meanwhile, or -1."""
        self.frames += 1
        if not self.window:
            return -1
        import cv2

        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return cv2.waitKey(1)

    def close(self) -> None:
        if self.window:
            import cv2

            cv2.destroyWindow(self.title)
            self.window = False
