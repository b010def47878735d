"""The daemon's TOML config, validated with pydantic.

Unknown keys are errors (a typo must not be silently ignored on a device nobody looks at), and every
field carries a description: `config/portrait.example.toml` documents each one.

The file in /etc is read-only to the service (ProtectSystem=strict). Changes made over MQTT go to
`<state_dir>/config.override.json`, written atomically, and are merged over the file at start.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from device.capture.config import CameraConfig
from device.errors import BadInput
from device.files import allowed_file, atomic_write
from device.runtime import BACKENDS, RUNTIMES, config_models

OVERRIDE_FILE = "config.override.json"
TOPIC_SAFE = r"^[A-Za-z0-9_.-]{1,64}$"  # no '/', '+', '#': it becomes one MQTT topic level
Mode = Literal["portrait", "capture", "mirror"]


class ConfigError(BadInput):
    """The config is wrong: the message names the key. Exit code 2."""

    def __init__(self, message: str, key: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.detail = detail or message


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _hostname_id() -> str:
    # A hostname may hold characters a topic level must not; keep the rest.
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "portrait"


def _default_state_dir() -> Path:
    # systemd's StateDirectory= exports the real path (under DynamicUser it is /var/lib/private/...).
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/portrait").split(":")[0])


class DeviceSection(Section):
    id: str = Field(
        default_factory=_hostname_id,
        pattern=TOPIC_SAFE,
        description="Device id, the topic level after the prefix: portrait/<id>/... Default: the hostname.",
    )
    kind: str = Field("generic", description="Hardware kind (e.g. 'pi5', 'jetson-orin'); updates check it.")
    groups: list[str] = Field(
        default_factory=list,
        description="Groups this device answers for: it also takes commands on portrait/group/<group>/cmd/<verb>.",
    )
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Writable folder for the job queue, the event outbox, visitor media and config overrides. "
        "Default: $STATE_DIRECTORY (set by systemd's StateDirectory=), else /var/lib/portrait.",
    )

    @field_validator("groups")
    @classmethod
    def _topic_safe_groups(cls, groups: list[str]) -> list[str]:
        for group in groups:
            if not re.match(TOPIC_SAFE, group):
                raise ValueError(f"group {group!r} may only hold letters, digits, '_', '.', '-'")
        return groups


class TlsSection(Section):
    enabled: bool = Field(False, description="Connect over TLS.")
    ca_file: Path | None = Field(
        None, description="CA certificate(s) that signed the broker's certificate. Unset: the system CAs."
    )
    cert_file: Path | None = Field(None, description="Client certificate, for brokers that require one.")
    key_file: Path | None = Field(None, description="Private key of the client certificate.")

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        return self


class HomeAssistantSection(Section):
    discovery: bool = Field(
        False,
        description="Publish Home Assistant MQTT discovery: stats, job, capture and visitor sensors, a "
        "capture button, a mode select and the last clip's image.",
    )
    prefix: str = Field("homeassistant", description="Home Assistant's discovery topic prefix.")


class MqttSection(Section):
    enabled: bool = Field(True, description="Connect to a broker at all (off: a stand-alone exhibit).")
    host: str = Field("localhost", description="Broker host name or address.")
    port: int | None = Field(None, ge=1, le=65535, description="Broker port. Unset: 1883, or 8883 with TLS.")
    client_id: str | None = Field(
        None,
        description="MQTT client id, stable across restarts (the broker keys our session by it). "
        "Unset: portrait-<device id>.",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keepalive interval in seconds.")
    username: str | None = Field(None, description="User name for the broker.")
    password_file: Path | None = Field(
        None, description="File holding the broker password (first line). Never put the password itself here."
    )
    password_credential: str | None = Field(
        None,
        description="Name of a systemd credential (LoadCredential=NAME:...) holding the password, "
        "read from $CREDENTIALS_DIRECTORY/NAME.",
    )
    tls: TlsSection = Field(default_factory=TlsSection, description="TLS settings.")
    topic_prefix: str = Field("portrait", pattern=r"^[A-Za-z0-9_.-]+$", description="First topic level.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay; doubles per failure.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Longest reconnect delay.")
    max_auth_failures: int = Field(
        5,
        ge=0,
        description="Before the first successful connection: give up after this many refusals by the "
        "broker (bad credentials, not authorized) or TLS failures (wrong CA, bad certificate) and exit "
        "with code 2. 0: keep retrying forever. An unreachable broker is always retried, never fatal.",
    )
    stats_interval_s: float = Field(30.0, ge=1, description="Seconds between stats messages.")
    max_payload_bytes: int = Field(
        6_000_000, ge=1024, description="Commands larger than this are refused with an error reply."
    )
    command_queue: int = Field(
        100, ge=1, le=10_000, description="Commands waiting to be handled; beyond it each is answered 'busy' at once."
    )
    session_expiry_s: int = Field(
        86_400,
        ge=0,
        description="The broker keeps our session (subscriptions, QoS 1 commands sent meanwhile) this long "
        "while the device is away, so commands sent during an outage or a restart arrive when it returns.",
    )
    command_max_age_s: float = Field(
        3600.0,
        gt=0,
        description="A command carrying its send time (`sent`, Unix seconds) older than this is refused as stale.",
    )
    outbox_max_events: int = Field(
        10_000, ge=10, description="Events kept on disk while the broker is away; beyond it the oldest go."
    )
    homeassistant: HomeAssistantSection = Field(
        default_factory=HomeAssistantSection, description="Home Assistant discovery."
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttSection:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("set password_file or password_credential, not both")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls.enabled else 1883)

    def read_password(self, env: dict[str, str] | None = None) -> str | None:
        """The password from its file or systemd credential; never stored in the config model."""
        env = dict(os.environ) if env is None else env
        if self.password_credential is not None:
            folder = env.get("CREDENTIALS_DIRECTORY")
            if not folder:
                raise ConfigError(
                    "mqtt.password_credential: $CREDENTIALS_DIRECTORY is not set "
                    "(add LoadCredential= to the unit, or use mqtt.password_file)"
                )
            path, key = Path(folder) / self.password_credential, "mqtt.password_credential"
        elif self.password_file is not None:
            path, key = self.password_file, "mqtt.password_file"
        else:
            return None
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
        return lines[0] if lines else ""


class JobsSection(Section):
    queue_size: int = Field(50, ge=1, description="Most jobs waiting or running; more are rejected.")
    timeout_s: float = Field(600.0, gt=0, description="A job running longer than this is stopped and failed.")
    hung_grace_s: float = Field(
        60.0,
        ge=0,
        description="A job still running this long past its timeout is hung: the watchdog is no longer fed "
        "(systemd restarts the daemon) and an update in probation rolls back.",
    )
    max_attempts: int = Field(
        3, ge=1, description="A job interrupted by a crash is resumed until it has started this many times."
    )
    retention_hours: float = Field(
        1.0, ge=0, description="Visitor photos and their clips are deleted after this many hours."
    )
    keep_finished_days: float = Field(7.0, ge=0, description="Finished job records are kept this many days.")
    photo_dirs: list[Path] = Field(
        default_factory=list, description="Folders a command may name a photo in; any other path is refused."
    )
    audio_dirs: list[Path] = Field(default_factory=list, description="Folders a command may name an audio file in.")
    max_photo_bytes: int = Field(
        4_000_000, ge=1024, description="Largest photo a command may carry inline (base64), decoded."
    )
    max_photo_pixels: int = Field(
        40_000_000,
        ge=10_000,
        le=200_000_000,
        description="Photos (files and inline) whose header declares more pixels are refused before decoding: "
        "a small compressed file can declare a size that takes gigabytes to decode.",
    )
    progress_interval_s: float = Field(1.0, ge=0, description="Least seconds between two progress events.")
    shutdown_grace_s: float = Field(
        5.0,
        ge=0,
        description="On SIGTERM a running job that will end within this many seconds is finished; "
        "otherwise it is stopped and re-queued.",
    )


class OutputSection(Section):
    clips_dir: Path | None = Field(None, description="Where clips are saved. Unset: <state_dir>/clips.")
    display: Literal["off", "window", "fullscreen"] = Field(
        "off", description="Show the animation on a screen: a window, fullscreen (kiosk), or not at all."
    )
    fps: int = Field(25, ge=1, le=60, description="Frame rate of clips unless a command asks otherwise.")
    audio_latency_ms: float = Field(
        120.0,
        ge=0,
        le=2000,
        description="Live speech: how long after playback starts the sound leaves the loudspeaker (player "
        "start-up plus the audio device's buffer). The live mouth waits this long, so lips and sound agree. "
        "Measure it by filming the screen and the speaker together; HDMI audio often needs more.",
    )
    size: int | None = Field(
        512, ge=64, le=4096, description="Longest side of clips unless a command asks otherwise; unset: the photo's."
    )


class Script(Section):
    """One thing to say: text spoken by TTS, or a recorded audio file."""

    text: str | None = Field(None, min_length=1, max_length=5000, description="Text to speak.")
    audio: Path | None = Field(None, description="A recorded speech file (WAV) instead of text.")
    transcript: str | None = Field(None, description="What the audio says (better lip sync).")
    lang: str = Field("en", description="Language of the text, e.g. 'en', 'de', 'fr'.")
    voice: str | None = Field(None, description="TTS voice; unset: the language's default.")

    @model_validator(mode="after")
    def _text_or_audio(self) -> Script:
        if (self.text is None) == (self.audio is None):
            raise ValueError("give either text or audio")
        return self


class PortraitSection(Section):
    photo: Path | None = Field(None, description="The portrait to bring to life.")
    playlist: list[Script] = Field(default_factory=list, description="Scripts played in turn.")
    schedule_interval_s: float = Field(
        300.0, ge=0, description="Play the next script this many seconds after the last began; 0: never."
    )
    visitor_frames: int = Field(
        10, ge=0, description="Play when a face is seen in this many camera frames in a row; 0: never."
    )
    visitor_cooldown_s: float = Field(
        30.0, ge=0, description="After a visitor triggered a script, ignore visitors this many seconds."
    )


class CaptureSection(Section):
    line: Script = Field(
        default_factory=lambda: Script(text="Hello! This is me, talking."),
        description="What the visitor's face says.",
    )


class MirrorSection(Section):
    photo: Path | None = Field(None, description="The portrait that mirrors the visitor. Unset: portrait.photo.")


class _GeneratorBase(Section):
    backend: Literal[BACKENDS] = Field(
        "auto",
        description=f"Generator runtime: {', '.join(BACKENDS)}. 'auto': the fastest installed one the bundle "
        "has a model for; 'none': the warp alone.",
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _known_runtime(cls, value: Any) -> Any:
        if value not in BACKENDS:
            raise ValueError(f"unknown generator runtime {value!r}; choose one of {', '.join(BACKENDS)}")
        return value

    def runtime_settings(self) -> dict[str, Any]:
        """Each runtime's settings ({name: its BackendConfig}), for device.runtime.load_generator(options=)."""
        return {name: getattr(self, name) for name in RUNTIMES}


# One table per runtime in the registry, validated by that runtime's own settings model:
# [generator.openvino] device = "GPU", threads = 2. Adding a runtime to device/runtime adds its table here.
GeneratorSection = create_model(
    "GeneratorSection",
    __base__=_GeneratorBase,
    __doc__="The generator runtime and the settings of each (used by whichever one loads).",
    **{
        name: (
            model,
            Field(
                default_factory=model,
                description=f"Settings of the {name} runtime, used when it "
                "loads (named in backend, or picked by auto).",
            ),
        )
        for name, model in config_models().items()
    },
)


# -- fleet updates (device/updates) -------------------------------------------------------------
class UpdatesSection(Section):
    root_key: Path | None = Field(
        None, description="The fleet's root public key (PEM). Unset: update jobs are refused."
    )
    root: Path | None = Field(
        None,
        description="Where installed bundles live (bundles/ for models, content/ for content). "
        "Unset: the asset cache, where the renderer looks for bundles/current.",
    )
    max_bundle_bytes: int = Field(200_000_000, ge=1, description="Larger bundles are refused.")
    min_free_bytes: int = Field(
        20_000_000, ge=0, description="Refuse a bundle unless this much disk stays free after download + staging."
    )
    window_chunks: int = Field(8, ge=1, le=256, description="Chunks asked for at a time.")
    chunk_timeout_s: float = Field(10.0, gt=0, description="Ask again for chunks that did not come in this long.")
    chunk_retries: int = Field(
        5,
        ge=0,
        le=1000,
        description="Times a chunk is asked for again (it did not come, or came with the wrong "
        "sha256) before the job FAILS; for an HTTP(S) source, tries in a row that bring no byte.",
    )
    download_timeout_s: float = Field(
        14400.0,
        gt=0,
        description="The whole download must finish within this many seconds of its first start "
        "(restarts included), else the job FAILS.",
    )
    rate_bytes_s: int = Field(0, ge=0, description="Download at most this many bytes/s (0: no limit).")
    probation_s: float = Field(
        300.0, ge=0, description="After a switch: a crash loop or a watchdog failure this long rolls back."
    )
    max_restarts: int = Field(3, ge=1, description="Starts within the probation window that count as a crash loop.")
    latency_budget_ms: float = Field(250.0, gt=0, description="Health check: most ms per generator crop.")


class LogSection(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Least level logged.")
    format: Literal["kv", "json"] = Field("kv", description="key=value lines, or one JSON object a line.")


class AppConfig(Section):
    mode: Mode = Field("portrait", description="What the device does: portrait, capture or mirror.")
    device: DeviceSection = Field(default_factory=DeviceSection, description="Identity and storage.")
    mqtt: MqttSection = Field(default_factory=MqttSection, description="Broker connection.")
    jobs: JobsSection = Field(default_factory=JobsSection, description="Job queue.")
    output: OutputSection = Field(default_factory=OutputSection, description="Clips and display.")
    portrait: PortraitSection = Field(default_factory=PortraitSection, description="Portrait mode.")
    capture: CaptureSection = Field(default_factory=CaptureSection, description="Capture-and-animate mode.")
    mirror: MirrorSection = Field(default_factory=MirrorSection, description="Mirror mode.")
    generator: GeneratorSection = Field(default_factory=GeneratorSection, description="Generator runtime.")
    camera: CameraConfig | None = Field(None, description="The camera; unset: no camera (jobs only).")
    log: LogSection = Field(default_factory=LogSection, description="Logging.")
    updates: UpdatesSection = Field(default_factory=UpdatesSection, description="Fleet updates.")

    @property
    def clips_dir(self) -> Path:
        return self.output.clips_dir or self.device.state_dir / "clips"

    @property
    def media_dir(self) -> Path:
        """Visitor photos and their clips: everything here is deleted after the retention."""
        return self.device.state_dir / "media"

    def revision(self) -> str:
        """A short hash of the effective config, reported in `state` so operators see what runs."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# What an unsigned `config` command may change: content, schedule, mode, display and the like. The
# broker, credentials, identity, paths, keys and update policy come only from the local file (or a
# signed content bundle): anyone who can publish on the broker must not be able to take the device over.
REMOTE_KEYS = (
    "mode",
    "portrait.playlist",
    "portrait.schedule_interval_s",
    "portrait.visitor_frames",
    "portrait.visitor_cooldown_s",
    "capture.line.",
    "output.display",
    "output.fps",
    "output.size",
    "output.audio_latency_ms",
    "jobs.queue_size",
    "jobs.progress_interval_s",
    "mqtt.stats_interval_s",
    "mqtt.homeassistant.discovery",
)


def remote_settable(key: str) -> bool:
    """True for a dotted key (e.g. 'portrait.playlist') that a `config` command may change."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in REMOTE_KEYS)


def describe_errors(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, what is wrong) for each error, e.g. ('mqtt.port', 'Input should be ... (got 'x')')."""
    out = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        # A discriminated union puts the tag in the location (camera.file.path): drop it.
        if len(loc) > 1 and loc[0] == "camera" and loc[1] in ("file", "opencv", "picamera2"):
            del loc[1]
        key = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "(top level)"
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            if not isinstance(value, dict | list) and error["type"] not in ("missing", "value_error"):
                message += f" (got {value!r})"
        out.append((key, message))
    return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"config {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None


def validate(raw: dict[str, Any], source: str) -> AppConfig:
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{key}: {message}" for key, message in describe_errors(exc)]
        raise ConfigError(f"config {source}: " + "; ".join(lines)) from None


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of base with changes applied; tables merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'jobs': {'queue_size': 5}} -> {'jobs.queue_size': 5}; lists stay whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class ConfigStore:
    """The config file plus the persisted MQTT overrides: load, change, persist atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = read_toml(path)
        # The file alone must be valid: an error in it is the operator's to fix, exit 2.
        base_config = validate(self.base, str(path))
        self.override_path = base_config.device.state_dir / OVERRIDE_FILE
        self.overrides: dict[str, Any] = {}
        self.override_error: str | None = None
        self.config = base_config
        if self.override_path.exists():
            try:
                overrides = json.loads(self.override_path.read_text())
                if not isinstance(overrides, dict):
                    raise ValueError("not a JSON object")
                locked = [k for k in flatten(overrides) if not remote_settable(k)]
                if locked:
                    raise ValueError(f"sets {', '.join(locked)}, which only the config file may set")
                self.config = validate(deep_merge(self.base, overrides), str(self.override_path))
                self.overrides = overrides
            except (OSError, ValueError, ConfigError) as exc:
                # A stale override (the file changed under it) must not brick the device: run the file.
                self.override_error = f"ignored {self.override_path}: {exc}"

    def check_change(self, changes: dict[str, Any]) -> tuple[AppConfig, list[str]]:
        """The config after `changes` and the dotted keys they change; raises ConfigError naming a key."""
        for key in flatten(changes):
            if not remote_settable(key):
                message = "cannot be changed over MQTT (only in the local config file)"
                raise ConfigError(f"{key}: {message}", key, message)
        merged = deep_merge(self.base, deep_merge(self.overrides, changes))
        try:
            new = AppConfig.model_validate(merged)
        except ValidationError as exc:
            key, message = describe_errors(exc)[0]
            raise ConfigError(f"{key}: {message}", key, message) from None
        _check_remote_audio(changes, new.jobs.audio_dirs)
        old_flat = flatten(self.config.model_dump(mode="json"))
        new_flat = flatten(new.model_dump(mode="json"))
        keys = sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k))
        return new, keys

    def apply(self, changes: dict[str, Any]) -> tuple[AppConfig, list[str]]:
        """Validate, persist (temp file + rename, so a power cut leaves old or new) and adopt."""
        new, keys = self.check_change(changes)
        overrides = deep_merge(self.overrides, changes)
        atomic_write(self.override_path, json.dumps(overrides, indent=2, sort_keys=True).encode())
        self.overrides, self.config = overrides, new
        return new, keys


def _check_remote_audio(changes: dict[str, Any], audio_dirs: list[Path]) -> None:
    """A script sent over MQTT may only name audio inside jobs.audio_dirs, as commands may."""
    portrait, capture = changes.get("portrait"), changes.get("capture")
    scripts: list[tuple[str, Any]] = []
    if isinstance(portrait, dict) and isinstance(portrait.get("playlist"), list):
        scripts += [(f"portrait.playlist.{i}.audio", s) for i, s in enumerate(portrait["playlist"])]
    if isinstance(capture, dict):
        scripts.append(("capture.line.audio", capture.get("line")))
    for key, script in scripts:
        audio = script.get("audio") if isinstance(script, dict) else None
        if audio is None:
            continue
        try:
            allowed_file(str(audio), audio_dirs, "jobs.audio_dirs")
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}", key, str(exc)) from None


def load_config(path: Path) -> AppConfig:
    """The effective config (file + overrides); raises ConfigError (exit 2) naming the bad key."""
    return ConfigStore(path).config
