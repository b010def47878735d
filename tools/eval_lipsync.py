"""Lip-sync against real speakers, read by an independent judge (dlib's 68-point landmarks).

    python -m tools.eval_lipsync FOLDER [--clips d10 d11 ...] [--backend none] [--fps native|N]
                                 [--out-dir DIR] [--json]

For every video in FOLDER with speech on its audio track: its first frame becomes the portrait, its audio
the speech, and the real command line renders them (`portrait animate FIRST.png --audio CLIP.wav --fps F
--size S --seconds T --backend B`; a sidecar CLIP.txt is passed as --transcript, CLIP.lang as --lang).
The judge then reads the inner-lip opening of the real speaker and of the render, frame by frame, and the
two tracks are correlated at lags of -8..+8 frames.

Sign convention: a positive lag means the render trails (is later than) the real mouth: render frame
t + lag is compared with real frame t. Targets: r >= 0.6 at some |lag| <= 1 frame, and the amplitude
ratio std(render opening) / std(real opening) within 0.8-1.25.

The renders show the real people of the clips: keep --out-dir outside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from device.errors import BadInput

if TYPE_CHECKING:
    from tools.judge import Judge

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".m4v", ".avi", ".webm")
LAGS = tuple(range(-8, 9))
TARGET_R = 0.6
TARGET_LAG = 1  # frames
TARGET_AMPLITUDE = (0.8, 1.25)
SIGN_CONVENTION = "positive lag = the render trails the real mouth (render frame t+lag vs real frame t)"
AUDIO_RATE = 16_000  # what the aligner works at; the render's audio track needs no more
# Correlations over fewer frame pairs than this are noise.
MIN_PAIRS = 12

# Speech check, on 20 ms frames: a track whose loudest frames stay under SILENT_DBFS holds nothing; one
# with under MIN_ACTIVE of its frames near its loudest level, or under MIN_VOICED of those voiced (a
# periodic signal at 60-400 Hz), is not speech to lip-sync.
SILENT_DBFS = -50.0
ACTIVE_RANGE_DB = 30.0
MIN_ACTIVE = 0.05
MIN_VOICED = 0.10
VOICING_PEAK = 0.45
# Below this best correlation between the real mouth and the audio's loudness, the voice on the track is
# probably not the person on screen (music, a voice-over): the clip measures little.
MIN_SPEAKER_R = 0.3
VOICE_BAND = (300.0, 3400.0)
# A real mouth opening with a smaller standard deviation than this hardly moves: nobody talks on screen.
MIN_REAL_STD = 0.015
# Speech pauses; a track with fewer quiet frames than this is continuous: music, or speech over music.
MIN_PAUSES = 0.10
# Real speakers' lips lead their sound by a frame or two at most; a larger gap says the clip's audio is offset.
CLIP_OFFSET_FRAMES = 3

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    fps: Fraction
    width: int
    height: int
    has_audio: bool


@dataclass(frozen=True)
class AudioCheck:
    """What is on the audio track: level, how much of it is active and voiced, and the verdict."""

    level_dbfs: float  # 99th percentile of the 20 ms RMS levels
    active: float  # fraction of frames within ACTIVE_RANGE_DB of that level
    pauses: float  # fraction of frames 25 dB or more under it (speech has pauses; music rarely)
    voiced: float  # fraction of the active frames that are periodic at a voice's pitch
    speech: bool
    reason: str


@dataclass
class ClipResult:
    clip: str
    fps: float
    render_fps: int
    frames: int  # compared frame pairs (the overlap of the real clip and the render)
    audio: AudioCheck
    lag_r: dict[int, float]
    best_lag: int
    best_r: float
    r_lag0: float
    r_within: float  # best r at |lag| <= TARGET_LAG
    lag_within: int
    amplitude_ratio: float
    real_std: float  # of the real mouth opening
    render_std: float
    real_mouth_audio_lag: int  # real mouth vs the audio's loudness (positive: the mouth trails the sound)
    real_mouth_audio_r: float
    render_mouth_audio_lag: int
    render_mouth_audio_r: float
    lost_real: list[int]
    lost_render: list[int]
    transcript: bool
    lang: str | None
    render_seconds: float
    judge_seconds: float
    passed: bool
    usable: bool  # the real mouth moves and follows the audio: the clip measures lip-sync
    notes: list[str] = field(default_factory=list)


# Clips and audio ---------------------------------------------------------------------------------------


def find_clips(folder: Path, names: list[str] | None) -> list[Path]:
    """The videos in ``folder`` (all, or those named by stem or file name), sorted by name."""
    if not folder.is_dir():
        raise BadInput(f"clip folder {folder}: not a folder" if folder.exists() else f"clip folder {folder}: not found")
    videos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if names:
        by_name = {p.stem: p for p in videos} | {p.name: p for p in videos}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise BadInput(f"--clips {' '.join(missing)}: no such video in {folder}")
        videos = list(dict.fromkeys(by_name[n] for n in names))
    if not videos:
        raise BadInput(f"clip folder {folder}: holds no video ({', '.join(VIDEO_EXTENSIONS)})")
    return videos


def probe(path: Path) -> ClipInfo:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInput(f"video {path}: has no video stream")
            video = container.streams.video[0]
            rate = video.average_rate or video.guessed_rate
            if not rate:
                raise BadInput(f"video {path}: has no frame rate")
            return ClipInfo(
                path=path,
                fps=Fraction(rate),
                width=video.codec_context.width,
                height=video.codec_context.height,
                has_audio=bool(container.streams.audio),
            )
    except av.FFmpegError as exc:
        raise BadInput(f"video {path}: cannot be read ({exc})") from exc


def check_audio(samples: np.ndarray, rate: int) -> AudioCheck:
    """Is there speech on this track? RMS energy and voicing over 20 ms frames."""
    hop = max(1, rate // 50)
    n = len(samples) // hop
    if n < 5:
        return AudioCheck(-math.inf, 0.0, 0.0, 0.0, False, "audio shorter than 0.1 s")
    frames = samples[: n * hop].reshape(n, hop).astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    level = float(np.percentile(db, 99))
    if level < SILENT_DBFS:
        return AudioCheck(level, 0.0, 0.0, 0.0, False, f"silent track (loudest {level:.0f} dBFS)")
    active = db > level - ACTIVE_RANGE_DB
    pauses = float((db < level - 25).mean())
    # Normalised autocorrelation of each active frame (via the FFT) at pitch periods of 2.5-16.7 ms.
    chunk = frames[active]
    spectrum = np.fft.rfft(chunk, n=2 * hop, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :hop]
    corr = corr / np.maximum(corr[:, :1], 1e-12)
    low, high = int(rate / 400), min(hop - 1, int(rate / 60))
    voiced = float((corr[:, low : high + 1].max(axis=1) > VOICING_PEAK).mean()) if len(chunk) else 0.0
    share = float(active.mean())
    if share < MIN_ACTIVE:
        return AudioCheck(level, share, pauses, voiced, False, f"almost silent ({share:.0%} of it active)")
    if voiced < MIN_VOICED:
        return AudioCheck(level, share, pauses, voiced, False, f"no voice ({voiced:.0%} voiced): noise, not speech")
    return AudioCheck(level, share, pauses, voiced, True, "speech")


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit mono PCM WAV."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def voice_band(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` with only 300-3400 Hz kept: the voice, less the bass and drums of a music bed."""
    spectrum = np.fft.rfft(np.asarray(samples, dtype=np.float64))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    spectrum[(freqs < VOICE_BAND[0]) | (freqs > VOICE_BAND[1])] = 0
    return np.fft.irfft(spectrum, len(samples))


def loudness_track(samples: np.ndarray, rate: int, fps: float, frames: int) -> np.ndarray:
    """The loudness (dB, floored 40 dB under its peak) of ``samples`` over each video frame's interval."""
    out = np.full(frames, np.nan)
    for i in range(frames):
        a, b = round(i * rate / fps), round((i + 1) * rate / fps)
        if b <= len(samples) and b > a:
            out[i] = 20 * np.log10(np.sqrt(np.mean(np.square(samples[a:b], dtype=np.float64))) + 1e-9)
    if np.isfinite(out).any():
        out = np.maximum(out, np.nanmax(out) - 40)
    return out


# Correlations ------------------------------------------------------------------------------------------


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the pairs where both are finite; NaN with too few pairs or no variation."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < MIN_PAIRS:
        return math.nan
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denominator = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else math.nan


def lag_correlations(real: np.ndarray, render: np.ndarray, lags: tuple[int, ...] = LAGS) -> dict[int, float]:
    """r(lag) between real[t] and render[t + lag] (positive lag: the render trails)."""
    n = min(len(real), len(render))
    real, render = np.asarray(real[:n], dtype=float), np.asarray(render[:n], dtype=float)
    out: dict[int, float] = {}
    for lag in lags:
        if lag >= 0:
            out[lag] = pearson(real[: n - lag], render[lag:])
        else:
            out[lag] = pearson(real[-lag:], render[: n + lag])
    return out


def best(lag_r: dict[int, float], within: int | None = None) -> tuple[int, float]:
    """The lag with the highest r (the smaller |lag| on a tie), optionally only |lag| <= within."""
    items = [(lag, r) for lag, r in lag_r.items() if np.isfinite(r) and (within is None or abs(lag) <= within)]
    if not items:
        return 0, math.nan
    return max(items, key=lambda item: (item[1], -abs(item[0])))


def amplitude_ratio(real: np.ndarray, render: np.ndarray) -> float:
    n = min(len(real), len(render))
    real, render = np.asarray(real[:n], dtype=float), np.asarray(render[:n], dtype=float)
    ok = np.isfinite(real) & np.isfinite(render)
    if ok.sum() < MIN_PAIRS or np.std(real[ok]) == 0:
        return math.nan
    return float(np.std(render[ok]) / np.std(real[ok]))


def resample_track(track: np.ndarray, fps: float, target_fps: float, frames: int) -> np.ndarray:
    """``track`` (one value per frame at ``fps``) read at ``frames`` frame times of ``target_fps``.

    Linear between neighbours; NaN where a neighbour is NaN or past the end.
    """
    if abs(fps - target_fps) < 1e-9:
        out = np.full(frames, np.nan)
        out[: min(frames, len(track))] = track[:frames]
        return out
    position = np.arange(frames) * fps / target_fps
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(track) - 1)
    out = np.full(frames, np.nan)
    inside = low < len(track)
    t = position[inside] - low[inside]
    out[inside] = track[low[inside]] * (1 - t) + track[high[inside]] * t
    return out


def spans(indices: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    if not indices:
        return "-"
    parts, start, prev = [], indices[0], indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


# Rendering and judging ---------------------------------------------------------------------------------


def render(
    photo: Path,
    audio: Path,
    out: Path,
    fps: int,
    size: int,
    frames: int,
    backend: str,
    transcript: str | None,
    lang: str | None,
) -> float:
    """Render through the real command line; the wall seconds it took. BadInput/RuntimeError on failure."""
    command = [
        sys.executable, "-m", "device.cli", "animate", str(photo), "--audio", str(audio),
        "--fps", str(fps), "--size", str(size), "--seconds", f"{frames / fps:.6f}",
        "--backend", backend, "--out", str(out), "--overwrite", "--quiet",
    ]  # fmt: skip
    if transcript:
        command += ["--transcript", transcript]
    if lang:
        command += ["--lang", lang]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        kind = BadInput if done.returncode == 2 else RuntimeError
        raise kind(f"portrait animate failed (exit {done.returncode}): {message}")
    return time.perf_counter() - started


def first_frame(path: Path) -> np.ndarray:
    from device.media.video import read_frames

    for frame in read_frames(path):
        return frame
    raise BadInput(f"video {path}: has no frames")


def sidecar(clip: Path, suffix: str) -> str | None:
    path = clip.with_suffix(suffix)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise BadInput(f"{path}: is empty (delete it, or write the {'transcript' if suffix == '.txt' else 'language'})")
    return text.split()[0] if suffix == ".lang" else text


def evaluate_clip(
    info: ClipInfo,
    samples: np.ndarray,
    check: AudioCheck,
    judge: Judge,
    work: Path,
    backend: str,
    fps_option: str,
    keep: bool = False,
) -> ClipResult:
    from PIL import Image

    from device.media.video import read_frames
    from tools.judge import mouth_opening

    clip = info.path
    stem = clip.stem
    fps = float(info.fps)
    render_fps = round(fps) if fps_option == "native" else int(fps_option)
    notes: list[str] = []
    if fps_option == "native" and abs(render_fps - fps) > 1e-6:
        notes.append(f"clip at {fps:.3f} fps rendered at {render_fps} fps; the real track is resampled in time")
    transcript, lang = sidecar(clip, ".txt"), sidecar(clip, ".lang")

    started = time.perf_counter()
    real_track = judge.track(read_frames(clip))
    judge_seconds = time.perf_counter() - started
    real_open = real_track.series(mouth_opening)
    n_real = len(real_open)
    if n_real == 0:
        raise BadInput(f"video {clip}: has no frames")
    frames = max(1, round(n_real / fps * render_fps))

    photo = work / f"{stem}.first.png"
    Image.fromarray(first_frame(clip)).save(photo)
    wav = write_wav(work / f"{stem}.wav", samples, AUDIO_RATE)
    out = work / f"{stem}.render.mp4"
    render_seconds = render(
        photo, wav, out, render_fps, max(info.width, info.height), frames, backend, transcript, lang
    )

    started = time.perf_counter()
    render_track = judge.track(read_frames(out))
    judge_seconds += time.perf_counter() - started
    render_open = render_track.series(mouth_opening)
    real_at_render = resample_track(real_open, fps, render_fps, len(render_open))
    n = min(len(render_open), len(real_at_render))
    if len(render_open) != frames:
        notes.append(f"render has {len(render_open)} frames, expected {frames}; compared the first {n}")
    real_at_render, render_open = real_at_render[:n], render_open[:n]

    lag_r = lag_correlations(real_at_render, render_open)
    best_lag, best_r = best(lag_r)
    lag_within, r_within = best(lag_r, TARGET_LAG)
    ratio = amplitude_ratio(real_at_render, render_open)
    voice = voice_band(samples, AUDIO_RATE)
    loud_real = loudness_track(voice, AUDIO_RATE, fps, n_real)
    loud_render = loudness_track(voice, AUDIO_RATE, render_fps, n)
    # Here the audio is the reference, so positive lag: the mouth trails its sound.
    real_audio_lag, real_audio_r = best(lag_correlations(loud_real, real_open))
    render_audio_lag, render_audio_r = best(lag_correlations(loud_render, render_open))
    real_std = float(np.nanstd(real_open)) if np.isfinite(real_open).any() else math.nan
    usable = bool(np.isfinite(real_audio_r) and real_audio_r >= MIN_SPEAKER_R and real_std >= MIN_REAL_STD)
    if check.pauses < MIN_PAUSES:
        notes.append(f"the audio hardly pauses ({check.pauses:.0%} quiet frames): music, or speech over music?")
    if not real_std >= MIN_REAL_STD:
        notes.append(
            f"the real mouth hardly moves (std {real_std:.3f} of the opening): the person on screen is not "
            "talking, so the amplitude ratio means nothing"
        )
    if not np.isfinite(real_audio_r) or real_audio_r < MIN_SPEAKER_R:
        notes.append(
            f"the real mouth barely follows the audio (best r {real_audio_r:.2f}): music, a voice-over "
            "or another speaker? this clip measures little"
        )
    elif abs(real_audio_lag) > CLIP_OFFSET_FRAMES:
        side = "leads" if real_audio_lag < 0 else "trails"
        notes.append(
            f"the real mouth {side} its own audio by {abs(real_audio_lag)} frames (r {real_audio_r:.2f}): the "
            f"clip's sound may be offset from its picture, and the render's lag includes that offset (the "
            f"render's mouth vs the audio: {render_audio_lag:+d} frames, r {render_audio_r:.2f})"
        )
    lost_real = [i for i in real_track.lost if i < n_real]
    lost_render = [i for i in render_track.lost if i < n]
    passed = bool(
        np.isfinite(r_within)
        and r_within >= TARGET_R
        and np.isfinite(ratio)
        and TARGET_AMPLITUDE[0] <= ratio <= TARGET_AMPLITUDE[1]
    )
    if keep:
        (work / f"{stem}.tracks.json").write_text(
            json.dumps({"real_opening": _floats(real_open), "render_opening": _floats(render_open)}) + "\n"
        )
    return ClipResult(
        clip=clip.name,
        fps=fps,
        render_fps=render_fps,
        frames=n,
        audio=check,
        lag_r=lag_r,
        best_lag=best_lag,
        best_r=best_r,
        r_lag0=lag_r[0],
        r_within=r_within,
        lag_within=lag_within,
        amplitude_ratio=ratio,
        real_std=real_std,
        render_std=float(np.nanstd(render_open)) if np.isfinite(render_open).any() else math.nan,
        real_mouth_audio_lag=real_audio_lag,
        real_mouth_audio_r=real_audio_r,
        render_mouth_audio_lag=render_audio_lag,
        render_mouth_audio_r=render_audio_r,
        lost_real=lost_real,
        lost_render=lost_render,
        transcript=transcript is not None,
        lang=lang,
        render_seconds=render_seconds,
        judge_seconds=judge_seconds,
        passed=passed,
        usable=usable,
        notes=notes,
    )


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in values]


def code_state() -> dict[str, object]:
    """The commit measured, the device/ files that differ from it (untracked ones too), and a hash of them."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=all", "--", "device").splitlines()
        diff = git("diff", "HEAD", "--", "device")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "device_changes": [], "device_diff_sha256": None}
    changed = [line[3:] for line in status if line.strip()]
    digest = hashlib.sha256(diff.encode())
    for line in status:
        if line.startswith("??") and (REPO / line[3:]).is_file():
            digest.update(line[3:].encode() + b"\0" + (REPO / line[3:]).read_bytes())
    return {
        "commit": commit,
        "device_changes": changed,
        "device_diff_sha256": digest.hexdigest()[:16] if changed else None,
    }


# Output ------------------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


COLUMNS = (
    # header, width
    ("clip", -10), ("fps", 3), ("frames", 6), ("voiced", 6), ("pauses", 6), ("r@0", 6), ("best lag", 8),
    ("r@best", 6), ("r@|lag|<=1", 10), ("amp", 5), ("real~audio", 10), ("rend~audio", 10),
    ("lost real", 9), ("lost rend", 9), ("render s", 8), ("judge s", 7), ("verdict", -7),
)  # fmt: skip


def _line(cells: list[str]) -> str:
    return " ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()


def _row(r: ClipResult) -> list[str]:
    verdict = ("PASS" if r.passed else "FAIL") + ("" if r.usable else "*")
    return [
        Path(r.clip).stem, str(r.render_fps), str(r.frames), f"{r.audio.voiced:.0%}", f"{r.audio.pauses:.0%}",
        _fmt(r.r_lag0), f"{r.best_lag:+d}", _fmt(r.best_r), f"{_fmt(r.r_within)} @{r.lag_within:+d}",
        _fmt(r.amplitude_ratio), f"{_fmt(r.real_mouth_audio_r)} @{r.real_mouth_audio_lag:+d}",
        f"{_fmt(r.render_mouth_audio_r)} @{r.render_mouth_audio_lag:+d}", str(len(r.lost_real)),
        str(len(r.lost_render)), f"{r.render_seconds:.1f}", f"{r.judge_seconds:.1f}", verdict,
    ]  # fmt: skip


def _mean_line(label: str, results: list[ClipResult]) -> str:
    m = mean_row(results)
    return _line([
        label, "", str(sum(r.frames for r in results)), "", "", _fmt(m["r_lag0"]), f"{m['best_lag']:+.1f}",
        _fmt(m["best_r"]), _fmt(m["r_within"]), _fmt(m["amplitude_ratio"]), _fmt(m["real_mouth_audio_r"]),
        _fmt(m["render_mouth_audio_r"]), "", "", f"{m['render_seconds']:.1f}", f"{m['judge_seconds']:.1f}",
        f"{m['passed']}/{len(results)}",
    ])  # fmt: skip


def print_table(results: list[ClipResult], skipped: list[tuple[str, str]], failed: list[tuple[str, str]],
                state: dict[str, object], backend: str) -> None:  # fmt: skip
    changes = state["device_changes"]
    code = f"commit {str(state['commit'])[:12]}"
    if changes:
        code += f" + uncommitted changes in {len(changes)} device/ files (diff {state['device_diff_sha256']})"
    print(f"lip-sync vs real speakers, judged by dlib's 68-point landmarks; backend {backend}; {code}")
    print(f"lag sign: {SIGN_CONVENTION}")
    header = _line([name for name, _ in COLUMNS])
    print(header)
    print("-" * len(header))
    for r in results:
        print(_line(_row(r)))
    if results:
        print("-" * len(header))
        print(_mean_line("mean", results))
        usable = [r for r in results if r.usable]
        if usable and len(usable) < len(results):
            print(_mean_line("mean, no *", usable))
    print(
        f"targets: r >= {TARGET_R} at |lag| <= {TARGET_LAG} frame, amplitude ratio std(render opening) / "
        f"std(real opening) {TARGET_AMPLITUDE[0]}-{TARGET_AMPLITUDE[1]}"
    )
    print("real~audio, rend~audio: best r between the real / rendered mouth opening and the loudness of the "
          "audio's voice band, at its lag (positive: the mouth trails the sound)")  # fmt: skip
    print("* the clip measures little: its real mouth hardly moves or does not follow the audio")
    for r in results:
        for note in r.notes:
            print(f"  {Path(r.clip).stem}: {note}")
        if r.lost_real or r.lost_render:
            print(f"  {Path(r.clip).stem}: the judge lost the face in real frames {spans(r.lost_real)}; "
                  f"render frames {spans(r.lost_render)}")  # fmt: skip
    for name, reason in skipped:
        print(f"skipped {name}: {reason}")
    for name, reason in failed:
        print(f"failed {name}: {reason}")


def mean_row(results: list[ClipResult]) -> dict[str, float]:
    def mean(key: str) -> float:
        values = [getattr(r, key) for r in results if np.isfinite(getattr(r, key))]
        return float(np.mean(values)) if values else math.nan

    keys = ("r_lag0", "best_lag", "best_r", "r_within", "amplitude_ratio", "real_mouth_audio_r",
            "render_mouth_audio_r", "render_seconds", "judge_seconds")  # fmt: skip
    row = {key: mean(key) for key in keys}
    row["passed"] = sum(r.passed for r in results)
    return row


def summary(results: list[ClipResult], skipped: list[tuple[str, str]], failed: list[tuple[str, str]],
            state: dict[str, object], backend: str) -> dict[str, object]:  # fmt: skip
    def clean(value: object) -> object:
        if isinstance(value, float):
            return None if not math.isfinite(value) else round(value, 4)
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return clean(
        {
            "judge": "dlib 68-point landmarks (HOG detector); mouth opening = inner-lip gap / outer eye corners",
            "lag_sign": SIGN_CONVENTION,
            "targets": {"r": TARGET_R, "max_abs_lag": TARGET_LAG, "amplitude_ratio": list(TARGET_AMPLITUDE)},
            "backend": backend,
            "code": state,
            "clips": [asdict(r) for r in results],
            "mean": mean_row(results) if results else None,
            "mean_usable": mean_row([r for r in results if r.usable]) if any(r.usable for r in results) else None,
            "skipped": [{"clip": n, "reason": why} for n, why in skipped],
            "failed": [{"clip": n, "reason": why} for n, why in failed],
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.eval_lipsync",
        description=__doc__.split("\n\n")[0],
        epilog=SIGN_CONVENTION,
    )
    parser.add_argument("folder", help="folder of talking clips (videos with their speech)")
    parser.add_argument("--clips", nargs="+", help="only these clips (names without extension, e.g. d10 d11)")
    parser.add_argument("--backend", default="none", help="the renderer's --backend (default: none, the warp)")
    parser.add_argument("--fps", default="native", help="render frame rate: native (the clip's) or a number")
    parser.add_argument("--out-dir", help="keep renders, first frames, WAVs, per-frame tracks and summary.json here")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary instead of the table")
    args = parser.parse_args(argv)
    try:
        if args.fps != "native" and not (args.fps.isdigit() and 1 <= int(args.fps) <= 120):
            raise BadInput(f"--fps {args.fps}: give native or a whole number of frames per second (1-120)")
        from device.media.audio import load_audio
        from tools.judge import Judge

        clips = find_clips(Path(args.folder), args.clips)
        state = code_state()  # before rendering: the checkout may change while this runs
        judge = Judge()
        results: list[ClipResult] = []
        skipped: list[tuple[str, str]] = []
        failed: list[tuple[str, str]] = []
        with tempfile.TemporaryDirectory(prefix="eval-lipsync-") as tmp:
            work = (Path(args.out_dir) if args.out_dir else Path(tmp)).resolve()
            work.mkdir(parents=True, exist_ok=True)
            for path in clips:
                info = probe(path)
                if not info.has_audio:
                    skipped.append((path.name, "no audio stream"))
                    continue
                samples, _ = load_audio(path, AUDIO_RATE)
                check = check_audio(samples, AUDIO_RATE)
                if not check.speech:
                    skipped.append((path.name, check.reason))
                    continue
                print(f"eval_lipsync: {path.name} ...", file=sys.stderr, flush=True)
                try:
                    results.append(
                        evaluate_clip(info, samples, check, judge, work, args.backend, args.fps, bool(args.out_dir))
                    )
                except (BadInput, RuntimeError) as exc:
                    failed.append((path.name, str(exc)))
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = summary(results, skipped, failed, state, args.backend)
    if args.out_dir:
        (Path(args.out_dir) / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(results, skipped, failed, state, args.backend)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
