"""The daemon config: strict schema, clear errors naming the key, overrides persisted atomically."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from device.config import AppConfig, ConfigError, ConfigStore, MqttSection, read_toml, validate
from tests.service.support import REPO

EXAMPLE = REPO / "config" / "portrait.example.toml"


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.service", "--config", str(path), "--check-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_config_is_valid() -> None:
    config = validate(read_toml(EXAMPLE), str(EXAMPLE))
    assert config.mode == "portrait"
    assert config.mqtt.topic_prefix == "portrait"
    assert config.jobs.retention_hours == 1.0


def test_every_field_is_documented() -> None:
    undocumented = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                undocumented.append(prefix + name)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")

    walk(AppConfig, "")
    assert undocumented == []


def test_example_mentions_every_key() -> None:
    """The example documents each setting: every key appears, as `key =` or as a `[table]`."""
    text = EXAMPLE.read_text()
    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                if f"[{prefix}{name}]" not in text:
                    missing.append(prefix + name)
                walk(annotation, f"{prefix}{name}.")
            elif f"{name} =" not in text and f"[{prefix}{name}]" not in text:
                missing.append(prefix + name)

    walk(AppConfig, "")
    assert missing == []


def test_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[mqtt]\nhost = "broker"\nhots = "typo"\n')
    result = check_config(path)
    assert result.returncode == 2
    assert "mqtt.hots: unknown key" in result.stderr


def test_a_misspelt_generator_runtime_exits_2_naming_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[generator]\nbackend = "onnxrutime"\n')
    result = check_config(path)
    assert result.returncode == 2
    assert "generator.backend: unknown generator runtime 'onnxrutime'" in result.stderr
    assert "onnxruntime, openvino, tflite" in result.stderr


def test_portrait_serve_check_config_names_a_misspelt_runtime(tmp_path: Path) -> None:
    """The same check through the `portrait` command that operators type."""
    path = tmp_path / "bad.toml"
    path.write_text('[generator]\nbackend = "openvno"\n')
    result = subprocess.run(
        [sys.executable, "-m", "device.cli", "serve", "--config", str(path), "--check-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "generator.backend: unknown generator runtime 'openvno'" in result.stderr


def test_each_runtime_has_its_own_settings_table() -> None:
    from device.runtime import RUNTIMES, config_models

    config = validate({"generator": {"backend": "openvino", "openvino": {"device": "gpu", "threads": 3}}}, "test")
    assert config.generator.openvino.device == "GPU" and config.generator.openvino.threads == 3
    settings = config.generator.runtime_settings()
    assert tuple(settings) == RUNTIMES
    assert settings["openvino"].threads == 3 and settings["tflite"].threads == 2  # the others keep their defaults
    for name, model in config_models().items():
        assert isinstance(settings[name], model)
    # A config from before the tables (backend alone) is valid and gets the defaults.
    assert validate({"generator": {"backend": "tflite"}}, "test").generator.tflite.threads == 2


def test_an_unknown_per_runtime_key_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[generator]\nbackend = "openvino"\n[generator.openvino]\ndevice = "CPU"\nthread = 2\n')
    result = check_config(path)
    assert result.returncode == 2
    assert "generator.openvino.thread: unknown key" in result.stderr


def test_a_wrong_per_runtime_value_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"generator\.openvino\.threads: Input should be greater .* \(got 0\)"):
        validate({"generator": {"openvino": {"threads": 0}}}, "test")
    with pytest.raises(ConfigError, match=r"generator\.onnxruntime\.device: Input should be 'auto' or 'cpu'"):
        validate({"generator": {"onnxruntime": {"device": "tpu"}}}, "test")
    with pytest.raises(ConfigError, match=r"generator\.cuda: unknown key"):
        validate({"generator": {"cuda": {"threads": 2}}}, "test")


def test_wrong_type_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[jobs]\nqueue_size = "many"\n')
    result = check_config(path)
    assert result.returncode == 2
    assert "jobs.queue_size" in result.stderr and "'many'" in result.stderr


def test_toml_syntax_error_exits_2_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[mqtt\nhost = 1\n")
    result = check_config(path)
    assert result.returncode == 2
    assert str(path) in result.stderr and "not valid TOML" in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = check_config(tmp_path / "nope.toml")
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_check_config_reports_a_missing_password_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path}/secret"\n')
    result = check_config(path)
    assert result.returncode == 2
    assert "mqtt.password_file" in result.stderr


def test_camera_table_is_validated_by_its_type() -> None:
    with pytest.raises(ConfigError, match=r"camera\.devise: unknown key"):
        validate({"camera": {"type": "opencv", "devise": 0}}, "test")
    config = validate({"camera": {"type": "file", "path": "/tmp/x.png"}}, "test")
    assert config.camera is not None and config.camera.type == "file"


def test_device_id_must_be_one_topic_level() -> None:
    with pytest.raises(ConfigError, match=r"device\.id"):
        validate({"device": {"id": "a/b"}}, "test")


def test_password_from_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    mqtt = MqttSection(username="u", password_credential="mqtt-password")
    assert mqtt.read_password({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "s3cret"


def test_password_credential_without_systemd_is_a_clear_error() -> None:
    mqtt = MqttSection(username="u", password_credential="mqtt-password")
    with pytest.raises(ConfigError, match=r"mqtt\.password_credential: \$CREDENTIALS_DIRECTORY is not set"):
        mqtt.read_password({})


def test_password_file_and_credential_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="password_file or password_credential"):
        validate({"mqtt": {"password_file": "/x", "password_credential": "y"}}, "test")


def _store(tmp_path: Path, body: str = "") -> ConfigStore:
    path = tmp_path / "portrait.toml"
    path.write_text(f'[device]\nstate_dir = "{tmp_path}/state"\n{body}')
    return ConfigStore(path)


def test_change_is_persisted_and_survives_a_restart(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = store.config.revision()
    new, keys = store.apply({"jobs": {"queue_size": 7}, "mode": "capture"})
    assert keys == ["jobs.queue_size", "mode"]
    assert json.loads(store.override_path.read_text()) == {"jobs": {"queue_size": 7}, "mode": "capture"}
    reopened = ConfigStore(store.path)
    assert reopened.config.jobs.queue_size == 7 and reopened.config.mode == "capture"
    assert reopened.config.revision() == new.revision() != before


def test_invalid_change_names_the_key_and_changes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    before = store.config
    with pytest.raises(ConfigError) as err:
        store.apply({"jobs": {"queue_size": -1}})
    assert err.value.key == "jobs.queue_size"
    assert store.config == before
    assert not store.override_path.exists()


def test_state_dir_cannot_be_changed_remotely(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(ConfigError, match=r"device\.state_dir: cannot be changed over MQTT"):
        store.apply({"device": {"state_dir": "/tmp/elsewhere"}})


def test_stale_override_is_ignored_not_fatal(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.apply({"jobs": {"queue_size": 7}})
    store.override_path.write_text('{"jobs": {"queue_sise": 7}}')  # e.g. written by an older version
    reopened = ConfigStore(store.path)
    assert reopened.config.jobs.queue_size == 50
    assert reopened.override_error is not None and "queue_sise" in reopened.override_error
