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
from dataclasses import dataclass, field

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
        self.languages = self._list(None)
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


def _languages_of(voice: _Voice) -> list[str]:
    """The language names of a voice: (priority byte, NUL-terminated name) pairs, ended by a 0 byte.
    Read entry by entry, never past the list's end."""
    names: list[str] = []
    address = voice.languages
    while address and ctypes.string_at(address, 1) != b"\0":
        name = ctypes.string_at(address + 1)  # up to its NUL
        names.append(name.decode("utf-8", "replace"))
        address += len(name) + 2
    return names


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
            f"language {lang!r}: not an eSpeak NG language{hint}; "
            "list the valid ones with `portrait languages`"
        )
    if voice is not None and voice not in engine.variants:
        raise BadInput(
            f"voice {voice!r}: not an eSpeak NG voice variant (e.g. {', '.join(engine.variants[:6])}); "
            "list the valid ones with `portrait languages --voices`"
        )
    if rate_wpm is not None and not RATE_MIN_WPM <= rate_wpm <= RATE_MAX_WPM:
        raise BadInput(f"speech rate {rate_wpm} words per minute: must be {RATE_MIN_WPM} to {RATE_MAX_WPM}")
    return (lang if voice is None else f"{lang}+{voice}").encode()


def synthesize(text: str, lang: str = "en", voice: str | None = None, rate_wpm: int | None = None) -> Speech:
    """Speak ``text`` with eSpeak NG: float32 mono audio plus its phones with their visemes.

    ``lang`` is an eSpeak NG language (see list_languages()), ``voice`` a variant (see list_voices()),
    ``rate_wpm`` the speed in words per minute (80..450, default the voice's own). Phones are in time
    order, back to back: each ends where the next starts, the last where eSpeak ends the message. Raises
    BadInput for empty or too long text, text with nothing to speak, an unknown language or voice, or a
    rate out of range.
    """
    with _LOCK:
        engine = _engine()
        name = _check_request(engine, text, lang, voice, rate_wpm)
        if not engine.set_voice(name):
            raise BadInput(f"language {lang!r} with voice {voice!r}: eSpeak NG cannot load this voice")
        default_rate = engine.lib.espeak_GetParameter(_PARAM_RATE, 0)
        capture = engine.synthesize(text, rate_wpm if rate_wpm is not None else default_rate)
        rate = engine.sample_rate
    samples = np.concatenate(capture.blocks) if capture.blocks else np.zeros(0, np.int16)
    audio = samples.astype(np.float32) / 32768.0
    phones = _timed_phones(capture, len(audio), rate)
    if all(phone.viseme == "sil" for phone in phones):
        raise BadInput(f"text {_excerpt(text)}: has nothing to speak (only punctuation or symbols)")
    return Speech(audio=audio, sample_rate=rate, phones=phones, text=text)


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
        if not engine.set_voice(lang.encode()):
            raise BadInput(f"language {lang!r}: eSpeak NG cannot load this voice")
        return engine.phonemize(text)
