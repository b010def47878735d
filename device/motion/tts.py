"""Text to speech with timed phonemes: eSpeak NG through the `espeakng-loader` wheel.

The wheel ships libespeak-ng and its voice data, so this works offline on every device. eSpeak is a
global C library with one voice, one parameter set and one callback per process, so every call goes
through a module lock and the library is initialized once, lazily.

Synthesis runs in AUDIO_OUTPUT_SYNCHRONOUS mode: `espeak_Synth` returns when the whole text is spoken,
having called our callback with blocks of int16 samples and event lists. With phoneme events enabled,
each phoneme comes as an event that carries its eSpeak mnemonic and the sample where it starts.
"""

from __future__ import annotations

import ctypes
import difflib
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.errors import BadInput, PortraitError
from device.motion.speech import Speech, TimedPhone
from device.motion.visemes import split_glides, visemes_for_espeak

MAX_TEXT_CHARS = 5000
RATE_MIN_WPM, RATE_MAX_WPM = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM in speak_lib.h

# speak_lib.h constants (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # report missing data as an error instead of calling exit()
_EVENT_LIST_TERMINATED = 0
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples from the start of this message
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


class _Voice(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated name) pairs, ended by a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Capture:
    """What one synthesis call collects from the callback."""

    blocks: list[np.ndarray] = field(default_factory=list)
    phonemes: list[tuple[int, str]] = field(default_factory=list)  # (start sample, mnemonic)
    ends: list[int] = field(default_factory=list)  # clause/message end samples


class _Engine:
    """The one eSpeak NG instance of this process. Use only under _LOCK."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = (_Callback,)
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_GetParameter.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.espeak_GetParameter.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = (ctypes.POINTER(_Voice),)
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Synth.argtypes = (
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        )
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = (ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int)
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib = lib
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options)
        if rate <= 0:
            raise PortraitError(f"eSpeak NG failed to initialize with data at {espeakng_loader.get_data_path()}")
        self.sample_rate = int(rate)
        self.capture = _Capture()
        # Kept on the instance: ctypes frees a callback thunk whose Python object is collected.
        self._callback = _Callback(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)
        # A language code is not a voice name ("zh" is spoken by the voice "sit/cmn"): each language
        # maps to the identifier of the voice that speaks it best, and only languages whose voice has
        # its dictionary installed are offered at all.
        self.voice_for = self._voices_by_language(Path(espeakng_loader.get_data_path()))
        self.languages = sorted(self.voice_for)
        self.variants = self._list(b"variant")
        self.current_voice: bytes | None = None

    def _on_synth(self, wav, n_samples: int, events) -> int:
        if wav and n_samples > 0:
            self.capture.blocks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                # Up to 8 bytes, NUL-terminated unless the name fills all 8.
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self.capture.phonemes.append((int(event.sample), name))
            elif event.type in (_EVENT_END, _EVENT_MSG_TERMINATED):
                self.capture.ends.append(int(event.sample))
            index += 1
        return 0  # continue synthesis

    def _list(self, languages: bytes | None) -> list[str]:
        """Names from espeak_ListVoices: languages of the voices, or variant names (spec "variant")."""
        spec = None
        if languages is not None:
            self._spec_languages = ctypes.create_string_buffer(languages)
            spec = _Voice(languages=ctypes.cast(self._spec_languages, ctypes.c_void_p))
        voices = self.lib.espeak_ListVoices(ctypes.byref(spec) if spec is not None else None)
        names: set[str] = set()
        index = 0
        while voices[index]:
            voice = voices[index].contents
            if languages is None:
                names.update(_languages_of(voice))
            else:
                # Variants are listed with identifiers like "!v/f3": the name after the folder is what
                # goes after the "+" in a voice name.
                identifier = (voice.identifier or b"").decode("utf-8", "replace")
                names.add(identifier.rsplit("/", 1)[-1])
            index += 1
        return sorted(name for name in names if name)

    def _voices_by_language(self, data: Path) -> dict[str, bytes]:
        best: dict[str, tuple[int, bytes]] = {}
        voices = self.lib.espeak_ListVoices(None)
        index = 0
        while voices[index]:
            voice = voices[index].contents
            index += 1
            identifier = voice.identifier or b""
            if not identifier or not _has_dictionary(data, identifier.decode("utf-8", "replace")):
                continue
            for priority, language in _prioritized_languages(voice):
                if language not in best or priority < best[language][0]:
                    best[language] = (priority, identifier)
        return {language: identifier for language, (_, identifier) in best.items()}

    def voice_name(self, lang: str, variant: str | None = None) -> bytes:
        """What espeak_SetVoiceByName takes for a language (and a variant): the voice's identifier."""
        identifier = self.voice_for[lang]
        return identifier if variant is None else identifier + b"+" + variant.encode()

    def set_voice(self, name: bytes) -> bool:
        if name == self.current_voice:
            return True
        ok = self.lib.espeak_SetVoiceByName(name) == _EE_OK
        self.current_voice = name if ok else None
        return ok

    def synthesize(self, text: str, rate_wpm: int) -> _Capture:
        self.lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        self.capture = _Capture()
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise PortraitError(f"eSpeak NG synthesis failed with status {status}")
        capture, self.capture = self.capture, _Capture()
        return capture

    def phonemize(self, text: str) -> list[str]:
        """eSpeak mnemonics for a text, in the current voice, without synthesizing."""
        data = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_char_p(ctypes.addressof(data))
        # phonememode: bits 8-23 give the separator between phoneme names (a space).
        mode = ord(" ") << 8
        phonemes: list[str] = []
        while pointer.value:  # the library advances the pointer clause by clause, NULL at the end
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, mode)
            if out:
                phonemes.extend(out.decode("utf-8", "replace").split())
        return phonemes


def _prioritized_languages(voice: _Voice) -> list[tuple[int, str]]:
    """The languages of a voice with their priority (lower is better): (priority byte, NUL-terminated
    name) pairs, ended by a 0 byte. Read entry by entry, never past the list's end."""
    entries: list[tuple[int, str]] = []
    address = voice.languages
    while address and ctypes.string_at(address, 1) != b"\0":
        priority = ctypes.string_at(address, 1)[0]
        name = ctypes.string_at(address + 1)  # up to its NUL
        entries.append((priority, name.decode("utf-8", "replace")))
        address += len(name) + 2
    return entries


def _languages_of(voice: _Voice) -> list[str]:
    return [name for _, name in _prioritized_languages(voice)]


def _has_dictionary(data: Path, identifier: str) -> bool:
    """Whether the voice's pronunciation dictionary is installed (a few voices ship without theirs)."""
    try:
        lines = (data / "lang" / identifier).read_text("latin-1").splitlines()
    except OSError:
        return True  # not a voice file we can read: let eSpeak decide
    dictionary = None
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "dictionary":
            dictionary = words[1]
        elif dictionary is None and len(words) >= 2 and words[0] == "language":
            dictionary = words[1].split("-")[0]
    return dictionary is None or (data / f"{dictionary}_dict").is_file()


_LOCK = threading.Lock()
_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    """The initialized engine; call with _LOCK held."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


def list_languages() -> list[str]:
    """Language codes eSpeak NG can speak here (e.g. "en", "en-us", "de", "fr", "es"), sorted."""
    with _LOCK:
        return list(_engine().languages)


def list_voices() -> list[str]:
    """Voice variants that go with any language (e.g. "f3", "m1", "klatt"), sorted."""
    with _LOCK:
        return list(_engine().variants)


def _check_request(engine: _Engine, text: str, lang: str, voice: str | None, rate_wpm: int | None) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise BadInput("text: is empty; give the words to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise BadInput(f"text: {len(text)} characters, more than the {MAX_TEXT_CHARS} a clip may speak")
    if "\0" in text:
        raise BadInput("text: contains a NUL character")
    if lang not in engine.languages:
        close = difflib.get_close_matches(lang.lower(), engine.languages, n=5, cutoff=0.6)
        close = close or [name for name in engine.languages if name.split("-")[0] == lang.split("-")[0].lower()]
        hint = f" (did you mean {', '.join(close[:5])}?)" if close else ""
        raise BadInput(
            f"language {lang!r}: not an eSpeak NG language{hint}; list the valid ones with `portrait languages`"
        )
    if voice is not None and voice not in engine.variants:
        raise BadInput(
            f"voice {voice!r}: not an eSpeak NG voice variant (e.g. {', '.join(engine.variants[:6])}); "
            "list the valid ones with `portrait languages --voices`"
        )
    if rate_wpm is not None and not RATE_MIN_WPM <= rate_wpm <= RATE_MAX_WPM:
        raise BadInput(f"speech rate {rate_wpm} words per minute: must be {RATE_MIN_WPM} to {RATE_MAX_WPM}")
    return engine.voice_name(lang, voice)


# Pictographs, dingbats, emoji modifiers and their joiners: eSpeak reads them out by name ("grinning
# face"), which no narration means. Currency and mathematical signs (Sc, Sm) are kept: "5 €" is "5 euros".
_UNSPOKEN_CATEGORIES = {"So", "Sk", "Co", "Cs"}
_UNSPOKEN_MARKS = {"\u200d", "\ufe0e", "\ufe0f", "\u20e3"}  # ZWJ, variation selectors, keycap


def speakable(text: str) -> str:
    """The text without emoji and other pictographic symbols (each becomes a space)."""
    return "".join(
        " " if unicodedata.category(ch) in _UNSPOKEN_CATEGORIES or ch in _UNSPOKEN_MARKS else ch for ch in text
    )


def synthesize(
    text: str, lang: str = "en", voice: str | None = None, rate_wpm: int | None = None, speak_symbols: bool = False
) -> Speech:
    """Speak ``text`` with eSpeak NG: float32 mono audio plus its phones with their visemes.

    ``lang`` is an eSpeak NG language (see list_languages()), ``voice`` a variant (see list_voices()),
    ``rate_wpm`` the speed in words per minute (80..450, default the voice's own). Phones are in time
    order, back to back: each ends where the next starts, the last where eSpeak ends the message. Raises
    BadInput for empty or too long text, text with nothing to speak, an unknown language or voice, or a
    rate out of range. Emoji and other pictographs are not spoken unless ``speak_symbols``.
    """
    spoken = text if speak_symbols else speakable(text)
    with _LOCK:
        engine = _engine()
        name = _check_request(engine, text, lang, voice, rate_wpm)
        if not engine.set_voice(name):
            raise BadInput(f"language {lang!r} with voice {voice!r}: eSpeak NG cannot load this voice")
        default_rate = engine.lib.espeak_GetParameter(_PARAM_RATE, 0)
        capture = engine.synthesize(spoken, rate_wpm if rate_wpm is not None else default_rate)
        rate = engine.sample_rate
    samples = np.concatenate(capture.blocks) if capture.blocks else np.zeros(0, np.int16)
    audio = samples.astype(np.float32) / 32768.0
    phones = _timed_phones(capture, len(audio), rate)
    if all(phone.viseme == "sil" for phone in phones):
        raise BadInput(f"text {_excerpt(text)}: has nothing to speak (only punctuation or symbols)")
    audio, phones = _with_lead_in(audio, phones, rate)
    return Speech(audio=audio, sample_rate=rate, phones=phones, text=text)


# eSpeak starts speaking 10 ms in; a mouth opens before its first sound, so it would already be moving on
# the clip's first frame. A short silence first lets the portrait start at rest and then open.
LEAD_IN_S = 0.15


def _with_lead_in(audio: np.ndarray, phones: list[TimedPhone], rate: int) -> tuple[np.ndarray, list[TimedPhone]]:
    first = next((p.start for p in phones if p.viseme != "sil"), 0.0)
    pad = round(max(0.0, LEAD_IN_S - first) * rate)
    if pad == 0:
        return audio, phones
    shift = pad / rate
    moved = [TimedPhone(p.start + shift, p.end + shift, p.phone, p.viseme) for p in phones]
    return np.concatenate([np.zeros(pad, np.float32), audio]), moved


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _timed_phones(capture: _Capture, n_samples: int, rate: int) -> list[TimedPhone]:
    # Stable sort: events at the same sample keep their order. Language switches ("(en)" where a French
    # text quotes an English word) are markers, not sounds: the phone before runs on to the next one.
    events = sorted((item for item in capture.phonemes if not item[1].startswith("(")), key=lambda item: item[0])
    phones: list[TimedPhone] = []
    for index, (start, name) in enumerate(events):
        end = events[index + 1][0] if index + 1 < len(events) else n_samples
        # A clause end inside the last phone of a clause ends it there (trailing silence is no phone).
        later_ends = [sample for sample in capture.ends if start < sample < end]
        if index + 1 == len(events) and later_ends:
            end = min(later_ends)
        start, end = min(start, n_samples), min(end, n_samples)
        if end <= start:
            continue  # zero-length markers such as the "_" eSpeak puts at a clause boundary
        phones.extend(split_glides(start / rate, end / rate, name, visemes_for_espeak(name)))
    return phones


def text_to_phonemes(text: str, lang: str = "en") -> list[str]:
    """eSpeak NG's phoneme mnemonics for ``text`` (no audio): a pronunciation for words a recognizer's
    dictionary lacks. Stress marks are kept."""
    with _LOCK:
        engine = _engine()
        if lang not in engine.languages:
            raise BadInput(f"language {lang!r}: not an eSpeak NG language; see `portrait languages`")
        if not engine.set_voice(engine.voice_name(lang)):
            raise BadInput(f"language {lang!r}: eSpeak NG cannot load this voice")
        return engine.phonemize(text)
