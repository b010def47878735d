"""Speech out of the kiosk's speaker: ALSA's `aplay` when the device has it (Pi OS and JetPack
do), else nothing (a headless box: the clip files keep the audio)."""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import threading
import wave

import numpy as np

log = logging.getLogger(__name__)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    samples = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(samples.tobytes())
    return buffer.getvalue()


def play_async(audio: np.ndarray, sample_rate: int) -> threading.Thread | None:
    player = shutil.which("aplay")
    if player is None:
        log.debug("no aplay: speech is not played aloud")
        return None
    data = wav_bytes(audio, sample_rate)

    def run() -> None:
        try:
            subprocess.run([player, "-q", "-"], input=data, timeout=len(audio) / sample_rate + 10, check=False)
        except (OSError, subprocess.SubprocessError) as error:
            log.warning("speech playback failed: %s", error)

    thread = threading.Thread(target=run, name="speaker", daemon=True)
    thread.start()
    return thread
