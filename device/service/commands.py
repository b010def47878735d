"""Command payloads: one strict pydantic model per verb.

Every payload is checked before anything happens: size, JSON, types (strict: "25" is not a number),
unknown fields, ranges, and paths, which must lie inside the configured folders (after resolving
symlinks and '..'). A failure raises CommandError naming the field; the daemon answers it and changes
nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from device.errors import CommandError
from device.files import allowed_file

JOB_ID = r"^[A-Za-z0-9_.-]{1,64}$"
REQUEST_ID = r"^[A-Za-z0-9_.:-]{1,128}$"  # echoed back: bounded, and nothing a log or a topic could trip on
MAX_NESTING = 16  # no command needs more than a few levels; a deep one is refused before json.loads
_HEADER_BYTES = 1 << 16  # enough for the dimensions of any JPEG, PNG, WebP or BMP
LANG = r"^[a-z]{2,3}([-_][A-Za-z0-9]{1,8})*$"
BARE_WORD = re.compile(rb"^\s*([A-Za-z]{1,16})\s*$")  # a plain option string, as Home Assistant's select sends
Priority = Literal["kiosk", "interactive", "batch"]


@dataclass
class CommandContext:
    """What validation needs from the config."""

    photo_dirs: list[Path] = field(default_factory=list)
    audio_dirs: list[Path] = field(default_factory=list)
    max_payload_bytes: int = 6_000_000
    max_photo_bytes: int = 4_000_000
    max_photo_pixels: int = 40_000_000
    max_age_s: float = 3600.0  # a command whose `sent` time is older than this is refused as stale


def _context(info: ValidationInfo) -> CommandContext:
    return info.context if isinstance(info.context, CommandContext) else CommandContext()


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str | None = Field(
        None, pattern=REQUEST_ID, description="Echoed in the reply, for clients without MQTT v5 correlation data."
    )
    sent: float | None = Field(
        None,
        description="When the client sent it (Unix seconds). The session is persistent, so commands sent while "
        "the device was away arrive when it returns; one older than mqtt.command_max_age_s is refused as stale.",
    )

    @classmethod
    def from_plain(cls, payload: bytes) -> dict[str, Any] | None:
        """The fields of a payload that is not JSON but a verb's plain form; None: it must be JSON."""
        return None

    @field_validator("sent", mode="before")
    @classmethod
    def _not_stale(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # JSON has one number type: 1700000000 is a time as much as 1700000000.0
        if isinstance(value, float):
            age = time.time() - value
            limit = _context(info).max_age_s
            if age > limit:
                raise ValueError(f"stale: sent {age:.0f} s ago, over the limit of {limit:g} s (mqtt.command_max_age_s)")
        return value


CommandT = TypeVar("CommandT", bound=Command)


class SpeechFields(Command):
    text: str | None = Field(None, min_length=1, max_length=5000, description="Text to speak.")
    audio: str | None = Field(None, description="Recorded speech (WAV) inside jobs.audio_dirs.")
    transcript: str | None = Field(None, max_length=5000, description="What the audio says.")
    lang: str = Field("en", pattern=LANG, description="Language of the text.")
    voice: str | None = Field(None, max_length=64, description="TTS voice.")

    @field_validator("lang")
    @classmethod
    def _known_lang(cls, value: str) -> str:
        return check_lang(value)

    @field_validator("voice")
    @classmethod
    def _known_voice(cls, value: str | None) -> str | None:
        return None if value is None else check_voice(value)

    @field_validator("audio")
    @classmethod
    def _audio_inside(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else allowed_file(value, _context(info).audio_dirs, "jobs.audio_dirs")

    @model_validator(mode="after")
    def _one_speech(self) -> SpeechFields:
        if self.text is not None and self.audio is not None:
            raise CommandError("audio", "give text or audio, not both")
        if self.transcript is not None and self.audio is None:
            raise CommandError("transcript", "only goes with audio")
        return self


class AnimateCommand(SpeechFields):
    job_id: str | None = Field(None, pattern=JOB_ID, description="Client-chosen id; a repeat is not run twice.")
    photo: str | None = Field(None, description="A photo inside jobs.photo_dirs.")
    photo_b64: str | None = Field(None, description="The photo itself, base64 (JPEG, PNG, ...).")
    fps: int | None = Field(None, ge=1, le=60, description="Frames per second.")
    size: int | None = Field(None, ge=64, le=2048, description="Longest side of the clip.")
    seconds: float | None = Field(None, gt=0, le=120, description="Clip length; default: the speech's.")
    priority: Priority = Field("interactive", description="kiosk before interactive before batch.")

    @field_validator("photo")
    @classmethod
    def _photo_inside(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = allowed_file(value, _context(info).photo_dirs, "jobs.photo_dirs")
        _check_pixels(Path(path).read_bytes()[:_HEADER_BYTES], _context(info).max_photo_pixels)
        return path

    @field_validator("photo_b64")
    @classmethod
    def _photo_bytes(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        limit = _context(info).max_photo_bytes
        if len(value) * 3 // 4 > limit + 3:
            raise ValueError(f"photo is over the limit of {limit} bytes (jobs.max_photo_bytes)")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        if image_kind(data) is None:
            raise ValueError("not a JPEG, PNG, WebP or BMP image")
        _check_pixels(data, _context(info).max_photo_pixels)
        return value

    @model_validator(mode="after")
    def _one_photo(self) -> AnimateCommand:
        if (self.photo is None) == (self.photo_b64 is None):
            raise CommandError("photo", "give photo (a path) or photo_b64 (the bytes), exactly one")
        return self

    def photo_bytes(self) -> bytes:
        assert self.photo_b64 is not None
        return base64.b64decode(self.photo_b64)


class SayCommand(SpeechFields):
    @model_validator(mode="after")
    def _something(self) -> SayCommand:
        if self.text is None and self.audio is None:
            raise CommandError("text", "give text or audio")
        return self


class CaptureCommand(Command):
    text: str | None = Field(None, min_length=1, max_length=5000, description="Instead of capture.line.")
    lang: str | None = Field(None, pattern=LANG, description="Language of that text.")
    voice: str | None = Field(None, max_length=64, description="TTS voice.")

    @field_validator("lang")
    @classmethod
    def _known_lang(cls, value: str | None) -> str | None:
        return None if value is None else check_lang(value)

    @field_validator("voice")
    @classmethod
    def _known_voice(cls, value: str | None) -> str | None:
        return None if value is None else check_voice(value)


class ModeCommand(Command):
    """`{"mode": "capture"}`, or the bare word `capture` (Home Assistant's select sends plain option strings)."""

    mode: Literal["portrait", "capture", "mirror"] = Field(description="The mode to switch to.")

    @classmethod
    def from_plain(cls, payload: bytes) -> dict[str, Any] | None:
        match = BARE_WORD.match(payload)
        return None if match is None else {"mode": match.group(1).decode("ascii")}


class ConfigCommand(Command):
    set: dict[str, Any] = Field(description="Config changes as nested tables, e.g. {'jobs': {'queue_size': 20}}.")
    dry_run: bool = Field(False, description="Validate and report, change nothing.")


class StatusCommand(Command):
    job_id: str | None = Field(None, pattern=JOB_ID, description="Report this job instead of the summary.")


class CancelCommand(Command):
    job_id: str = Field(pattern=JOB_ID, description="The job to cancel.")


class UpdateCommand(Command):
    """A signed update job envelope; the updater checks the signature chain and everything else."""

    job: dict[str, Any] = Field(description="The job document (device.updates.job.JobDoc).")
    signature: str = Field(max_length=200, description="Ed25519 signature of the canonical job, base64.")
    cert: dict[str, Any] = Field(description="The root-signed certificate of the signing key.")
    revocations: dict[str, Any] | None = Field(None, description="The newest root-signed revocation list.")


class RollbackCommand(Command):
    """A signed rollback order, like an update job: any client can publish, only the fleet's keys can sign.
    The order names the bundle kind, its targets, an issue time, an expiry and a unique id."""

    order: dict[str, Any] = Field(description="The order document (device.updates.job.RollbackOrder).")
    signature: str = Field(max_length=200, description="Ed25519 signature of the canonical order, base64.")
    cert: dict[str, Any] = Field(description="The root-signed certificate of the signing key.")
    revocations: dict[str, Any] | None = Field(None, description="The newest root-signed revocation list.")

    @model_validator(mode="before")
    @classmethod
    def _signed(cls, data: Any) -> Any:
        # The old unsigned form ({"kind": ...}) gets a reason, not just "field required".
        if isinstance(data, dict) and not {"order", "signature", "cert"} <= data.keys():
            raise CommandError(
                "order",
                "rollback takes a signed order (order, signature, cert), as `portrait "
                "fleet rollback --key ... --cert ...` sends it; this one is not signed",
            )
        return data


@lru_cache(maxsize=1)
def _espeak_names() -> tuple[frozenset[str], frozenset[str]] | None:
    """eSpeak NG's languages and voice variants, read once (about 0.2 s): a job given a language the
    device cannot speak would only fail later, after waiting its turn in the queue."""
    from device.errors import PortraitError

    try:
        from device.motion.tts import list_languages, list_voices

        return frozenset(list_languages()), frozenset(list_voices())
    except (ImportError, OSError, PortraitError):
        return None  # no usable eSpeak here: the pattern is all we can check; the job reports the rest


def check_lang(value: str) -> str:
    """`value` if eSpeak NG speaks it here; else ValueError with the closest names."""
    names = _espeak_names()
    if names is None or value in names[0]:
        return value
    import difflib

    close = difflib.get_close_matches(value.lower(), sorted(names[0]), n=4, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"{value!r} is not an eSpeak NG language on this device{hint}; `portrait languages` lists them")


def check_voice(value: str) -> str:
    """`value` if it is an eSpeak NG voice variant here; else ValueError."""
    names = _espeak_names()
    if names is None or value in names[1]:
        return value
    raise ValueError(f"{value!r} is not an eSpeak NG voice variant; `portrait languages --voices` lists them")


def image_kind(data: bytes) -> str | None:
    """The image format from its magic bytes: enough to refuse junk before it reaches a job."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    return None


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse a photo whose header declares more than max_pixels: it would be decoded in full later."""
    from device.errors import BadInput
    from device.face.photo import image_dimensions

    try:
        width, height = image_dimensions(data)
    except BadInput as exc:
        raise ValueError(str(exc).removeprefix("photo: ")) from None
    if width * height > max_pixels:
        raise ValueError(
            f"{width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} (jobs.max_photo_pixels)"
        )


_NESTING_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(payload: bytes) -> int:
    """How deeply a JSON document nests arrays and objects, read without decoding it."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_NESTING:
        return 0  # cannot be too deep: the common case costs two C-speed counts
    depth = deepest = 0
    for match in _NESTING_TOKENS.finditer(payload):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_payload(model: type[CommandT], payload: bytes, ctx: CommandContext) -> CommandT:
    """The validated command, or CommandError naming the field that is wrong.

    Bounded before it is decoded: its size, then how deeply it nests; then JSON, then the model."""
    if len(payload) > ctx.max_payload_bytes:
        raise CommandError(
            "payload", f"{len(payload)} bytes is over the limit of {ctx.max_payload_bytes} (mqtt.max_payload_bytes)"
        )
    if not payload.strip():
        payload = b"{}"  # `mosquitto_pub -n`: a command without arguments
    plain = model.from_plain(payload)
    if plain is not None:
        doc: Any = plain
    else:
        if nesting_depth(payload) > MAX_NESTING:
            raise CommandError("payload", f"nests deeper than {MAX_NESTING} levels")
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError("payload", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CommandError("payload", f"must be a JSON object, not {type(doc).__name__}")
    request_id = echoable_request_id(doc.get("request_id"))
    try:
        return model.model_validate(doc, context=ctx)
    except CommandError as exc:
        exc.request_id = request_id
        raise
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "payload"
        extra = error["type"] == "extra_forbidden"
        message = "unknown field" if extra else error["msg"].removeprefix("Value error, ")
        raise CommandError(where, message, request_id) from None


def echoable_request_id(value: Any) -> str | None:
    """A request id safe to echo in an error reply: a short plain string, else none at all."""
    return value if isinstance(value, str) and re.match(REQUEST_ID, value) else None
