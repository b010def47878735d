"""Speech acoustics without a language model: frame features, speech detection, alignment of a
recording to eSpeak NG's own rendering of its transcript, and a mouth driven by the sound alone.

Everything runs on 16 kHz mono at 100 frames a second (25 ms windows, 10 ms hop), in numpy.

- `align_to_transcript`: eSpeak speaks the transcript in the recording's language; dynamic time warping
  between the two recordings' cepstra maps each eSpeak phone onto the recording. Works for any eSpeak
  NG language: the phones come from eSpeak's own rules for it.
- `acoustic_phones`: no transcript, any language. Loudness gives speech and pauses; the first two
  formants (from linear prediction) give how open (F1), how rounded (low F2) or spread (high F2) the
  mouth is; unvoiced noise gives the teeth-together shapes (s, f). Each 10 ms frame gets a viseme,
  runs of one viseme become phones, and the usual coarticulation turns them into a mouth track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from device.errors import BadInput
from device.media.audio import resample
from device.motion.speech import TimedPhone

log = logging.getLogger(__name__)

RATE = 16000
HOP = 160  # 10 ms
WINDOW = 400  # 25 ms
FRAME_S = HOP / RATE
N_MELS = 32
N_CEPS = 13

# A recording is "speech" where it is this loud against its own loudest and above its noise floor.
SPEECH_BELOW_PEAK_DB = 35.0
SPEECH_ABOVE_FLOOR_DB = 12.0
MIN_SPEECH_S = 0.15  # less voiced sound than this in a whole file: there is no speech in it
AUDIBLE_DBFS = -60.0

# Beyond this many cells the full DTW matrix would cost too much memory on a Pi; a band is used.
DTW_FULL_CELLS = 4_000_000


@dataclass
class Frames:
    """Per-frame features of one recording (100 per second)."""

    log_energy: np.ndarray  # (n,) dB
    speech: np.ndarray  # (n,) bool: loud against this recording's own pauses (segmentation)
    voiced: np.ndarray  # (n,) bool: periodic and audible (a voice, or music)
    ceps: np.ndarray  # (n, N_CEPS - 1) mean-normalised cepstra, c0 dropped
    log_mel: np.ndarray  # (n, N_MELS)

    @property
    def voiced_seconds(self) -> float:
        return float(np.count_nonzero(self.voiced)) * FRAME_S


def to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    mono = np.asarray(audio, dtype=np.float32)
    return resample(mono, rate, RATE) if rate != RATE else mono


def _framed(x: np.ndarray) -> np.ndarray:
    n = max(0, 1 + (len(x) - WINDOW) // HOP) if len(x) >= WINDOW else 0
    if n == 0:
        return np.zeros((0, WINDOW), np.float32)
    index = np.arange(WINDOW)[None, :] + HOP * np.arange(n)[:, None]
    return x[index]


def _mel_filters(n_fft: int) -> np.ndarray:
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(np.array(60.0)), hz_to_mel(np.array(7600.0)), N_MELS + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / RATE)
    filters = np.zeros((N_MELS, len(bins)), np.float32)
    for m in range(N_MELS):
        low, centre, high = hz[m], hz[m + 1], hz[m + 2]
        rising = (bins - low) / (centre - low)
        falling = (high - bins) / (high - centre)
        filters[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return filters


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)).astype(np.float32)


def analyse(audio16k: np.ndarray) -> Frames:
    """Frame features of 16 kHz mono audio."""
    x = np.asarray(audio16k, dtype=np.float32)
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])  # pre-emphasis: the formants stand out
    frames = _framed(np.pad(x, (WINDOW // 2, WINDOW // 2)))
    window = np.hanning(WINDOW).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(frames * window, n=512, axis=1)) ** 2
    energy = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    log_mel = np.log(spectrum @ _mel_filters(512).T + 1e-8)
    ceps = log_mel @ _dct_matrix(N_MELS, N_CEPS).T
    ceps = ceps[:, 1:] - ceps[:, 1:].mean(axis=0, keepdims=True) if len(ceps) else ceps[:, 1:]
    peak = float(np.percentile(energy, 99)) if len(energy) else 0.0
    floor = float(np.percentile(energy, 10)) if len(energy) else 0.0
    audible = (energy > peak - SPEECH_BELOW_PEAK_DB) & (energy > AUDIBLE_DBFS)
    # Speech over a music bed, or without pauses, never falls to its floor: it is still speech.
    speech = audible & (energy > floor + SPEECH_ABOVE_FLOOR_DB)
    voiced = _voicing(frames) & audible
    return Frames(energy, speech | voiced, voiced, ceps.astype(np.float32), log_mel.astype(np.float32))


def _voicing(frames: np.ndarray) -> np.ndarray:
    """Periodic frames: a normalised autocorrelation peak at a pitch lag (60-400 Hz)."""
    if len(frames) == 0:
        return np.zeros(0, bool)
    centred = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * WINDOW, axis=1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :WINDOW]
    zero = autocorr[:, :1] + 1e-9
    low, high = RATE // 400, RATE // 60
    peak = autocorr[:, low:high].max(axis=1) / zero[:, 0]
    return peak > 0.45


def has_speech(frames: Frames) -> bool:
    return frames.voiced_seconds >= MIN_SPEECH_S


# --- alignment to eSpeak's rendering of the transcript -------------------------------------------------


def dtw_path(cost: np.ndarray, band: int | None = None) -> np.ndarray:
    """The cheapest monotonic path through a cost matrix (n, m), steps (1,0), (0,1), (1,1): (k, 2) pairs.

    Row by row the recurrence D[i, j] = c[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1]) has a running
    minimum along j, which numpy computes with minimum.accumulate over cumulative costs. `band`
    limits |j - i*m/n| (cells outside cost infinity), so long files stay within memory."""
    n, m = cost.shape
    inf = np.float32(np.inf)
    back = np.zeros((n, m), np.uint8)  # 0 diagonal, 1 from above, 2 from the left
    previous = np.full(m, inf, np.float32)
    for i in range(n):
        row = cost[i].astype(np.float32, copy=True)
        if band is not None:
            centre = i * (m - 1) / max(n - 1, 1)
            lo, hi = max(0, int(centre - band)), min(m, int(centre + band) + 1)
            row[:lo] = inf
            row[hi:] = inf
        if i == 0:
            current = np.cumsum(row)
            back[0, 1:] = 2
        else:
            diagonal = np.concatenate([[inf], previous[:-1]])
            above = previous
            best_in = np.minimum(diagonal, above)
            back[i] = np.where(diagonal <= above, 0, 1)
            cumulative = np.cumsum(row)
            before = np.concatenate([[0.0], cumulative[:-1]]).astype(np.float32)
            # D[j] = min(best_in[j] + row[j], D[j-1] + row[j]) = C[j] + min_{k<=j}(best_in[k] - C[k-1])
            candidates = best_in - before
            running = np.minimum.accumulate(candidates)
            current = cumulative + running
            from_left = np.concatenate([[False], running[1:] < candidates[1:]])
            back[i][from_left] = 2
        previous = current.astype(np.float32)
    i, j = n - 1, m - 1
    path = [(i, j)]
    while i > 0 or j > 0:
        step = back[i, j]
        if i == 0:
            j -= 1
        elif j == 0 or step == 1:
            i -= 1
        elif step == 0:
            i, j = i - 1, j - 1
        else:
            j -= 1
        path.append((i, j))
    return np.array(path[::-1])


def _cosine_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    an = a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-6)
    bn = b / (np.linalg.norm(b, axis=1, keepdims=True) + 1e-6)
    return (1.0 - an @ bn.T).astype(np.float32)


def align_to_transcript(
    audio16k: np.ndarray, transcript: str, lang: str, frames: Frames | None = None
) -> tuple[list[TimedPhone], float]:
    """eSpeak's phones of the transcript, timed on the recording; and the mean path cost (0 = identical
    cepstra, about 1 = unrelated), which tells a transcript that does not fit the audio. `frames`: the
    recording's features, when the caller has them already."""
    from device.motion.tts import synthesize

    reference = synthesize(transcript, lang=lang)
    ref16 = to_16k(reference.audio, reference.sample_rate)
    ours = frames if frames is not None else analyse(audio16k)
    theirs = analyse(ref16)
    if len(ours.ceps) == 0 or len(theirs.ceps) == 0:
        raise BadInput("audio: too short to align")
    # Silence on either side is cheap to match with silence, whatever its length.
    ours_features = _with_energy(ours)
    theirs_features = _with_energy(theirs)
    cost = _cosine_cost(ours_features, theirs_features)
    cells = cost.shape[0] * cost.shape[1]
    band = None
    if cells > DTW_FULL_CELLS:
        band = max(int(0.25 * max(cost.shape)), 300)
    path = dtw_path(cost, band)
    mean_cost = float(cost[path[:, 0], path[:, 1]].mean())
    # For each reference frame, the recording frame it maps to (the first, where several do).
    mapping = np.full(cost.shape[1], -1, np.int64)
    for i, j in path:
        if mapping[j] < 0:
            mapping[j] = i

    def to_ours(seconds: float) -> float:
        frame = min(max(round(seconds * RATE / HOP), 0), len(mapping) - 1)
        return float(mapping[frame]) * FRAME_S

    duration = len(audio16k) / RATE
    phones: list[TimedPhone] = []
    for phone in reference.phones:
        start, end = to_ours(phone.start), to_ours(phone.end)
        end = min(end, duration)
        if end > start:
            phones.append(TimedPhone(start, end, phone.phone, phone.viseme))
    return phones, mean_cost


def _with_energy(frames: Frames) -> np.ndarray:
    """Cepstra plus a loudness channel, and silence frames mapped to one common point."""
    energy = (frames.log_energy - frames.log_energy.max()) / 20.0
    features = np.concatenate([frames.ceps / 10.0, energy[:, None]], axis=1)
    features[~frames.speech] = np.array([0.0] * (features.shape[1] - 1) + [-3.0], np.float32)
    return features


# --- the mouth from the sound alone --------------------------------------------------------------------


def _formants(audio16k: np.ndarray, voiced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 and F2 (Hz) per frame from linear prediction at 10 kHz (the first two formants lie below
    3 kHz: fewer poles, steadier estimates); NaN where unvoiced or not found."""
    n = len(voiced)
    f1 = np.full(n, np.nan)
    f2 = np.full(n, np.nan)
    rate, hop, width, order = 10000, 100, 250, 10
    x = resample(np.asarray(audio16k, dtype=np.float32), RATE, rate)
    x = np.append(x[:1], x[1:] - 0.7 * x[:-1])
    x = np.pad(x, (width // 2, width // 2))
    window = np.hamming(width)
    for index in np.flatnonzero(voiced):
        frame = x[index * hop : index * hop + width]
        if len(frame) < width:
            break
        frame = frame * window
        r = np.correlate(frame, frame, "full")[width - 1 : width + order]
        if r[0] <= 1e-9:
            continue
        a = _levinson(r, order)
        roots = np.roots(a)
        roots = roots[np.imag(roots) > 0.01]
        if len(roots) == 0:
            continue
        order_by_angle = np.argsort(np.angle(roots))
        freqs = np.angle(roots[order_by_angle]) * rate / (2 * np.pi)
        bandwidths = -np.log(np.abs(roots[order_by_angle])) * rate / np.pi
        keep = freqs[(freqs > 200) & (bandwidths < 500)]
        if len(keep) >= 2:
            f1[index], f2[index] = keep[0], keep[1]
    return f1, f2


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    a = np.zeros(order + 1)
    a[0] = 1.0
    error = r[0]
    for i in range(1, order + 1):
        acc = r[i] + np.dot(a[1:i], r[i - 1 : 0 : -1])
        k = -acc / error
        a[1 : i + 1] = a[1 : i + 1] + k * np.concatenate([a[i - 1 : 0 : -1], [1.0]])
        error *= 1.0 - k * k
        if error <= 0:
            break
    return a


def _frame_visemes(audio16k: np.ndarray, frames: Frames) -> list[str]:
    """A viseme for every 10 ms frame, from loudness, voicing, formants and noise."""
    f1, f2 = _formants(audio16k, frames.voiced)
    # Loudness relative to this speaker's loud vowels sets how far the jaw goes within a class.
    peak = float(np.percentile(frames.log_energy[frames.speech], 95)) if frames.speech.any() else 0.0
    high_band = frames.log_mel[:, -8:].mean(axis=1) - frames.log_mel[:, :8].mean(axis=1)
    out: list[str] = []
    for index in range(len(frames.speech)):
        if not frames.speech[index]:
            out.append("sil")
            continue
        if not frames.voiced[index] or np.isnan(f1[index]):
            out.append("SS" if high_band[index] > 0.0 else "kk")
            continue
        loud = frames.log_energy[index] > peak - 12.0
        first, second = f1[index], f2[index]
        if first > 650 and loud:
            out.append("aa")
        elif second < 1100:
            out.append("oh" if first > 450 else "ou")
        elif second > 1900:
            out.append("ih" if first < 450 else "E")
        elif first > 500:
            out.append("E")
        else:
            out.append("nn" if not loud else "E")
    return out


def acoustic_phones(audio16k: np.ndarray, frames: Frames | None = None) -> list[TimedPhone]:
    """Phones (visemes with times) driven by the sound alone, for speech in any language."""
    frames = frames if frames is not None else analyse(audio16k)
    labels = _frame_visemes(audio16k, frames)
    phones: list[TimedPhone] = []
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or labels[index] != labels[start]:
            viseme = labels[start]
            # Runs shorter than 30 ms are noise in the estimate; they join the run before.
            if index - start >= 3 or not phones:
                if viseme != "sil":
                    phones.append(TimedPhone(start * FRAME_S, index * FRAME_S, f"~{viseme}", viseme))
            elif phones and viseme != "sil":
                last = phones[-1]
                phones[-1] = TimedPhone(last.start, index * FRAME_S, last.phone, last.viseme)
            start = index
    return _closures_in_gaps(phones)


def _closures_in_gaps(phones: list[TimedPhone]) -> list[TimedPhone]:
    """A short silence inside speech is a stop closure: lips or tongue shut it. The lips are the
    visible guess (p, b, m close them), and a closed mouth is never wrong in a gap."""
    out: list[TimedPhone] = []
    for phone in phones:
        if out and 0.04 <= phone.start - out[-1].end <= 0.18:
            out.append(TimedPhone(out[-1].end, phone.start, "~PP", "PP"))
        out.append(phone)
    return out
