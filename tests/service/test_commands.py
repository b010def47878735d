"""Command validation: every bad payload raises CommandError naming the field."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from device.service.commands import AnimateCommand, Command, CommandContext, CommandError, ConfigCommand
from device.service.handlers import COMMANDS
from device.service.router import CommandRouter, Route


def parse_command(verb: str, payload: bytes, ctx: CommandContext) -> Command:
    """What the daemon's router does with a payload before any handler runs."""
    router = CommandRouter({v: Route(model, lambda c: {}) for v, (model, _) in COMMANDS.items()}, lambda: ctx)
    return router.parse(verb, payload)


@pytest.fixture
def ctx(photos: Path) -> CommandContext:
    return CommandContext(photo_dirs=[photos], max_payload_bytes=100_000, max_photo_bytes=50_000)


def error_of(verb: str, payload: bytes | str | dict, ctx: CommandContext) -> CommandError:
    raw = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    raw = raw.encode() if isinstance(raw, str) else raw
    with pytest.raises(CommandError) as err:
        parse_command(verb, raw, ctx)
    return err.value


def test_valid_animate_is_parsed(ctx: CommandContext, photos: Path) -> None:
    doc = {"photo": str(photos / "astronaut.png"), "text": "Hi", "fps": 25, "seconds": 2, "priority": "kiosk"}
    command = parse_command("animate", json.dumps(doc).encode(), ctx)
    assert isinstance(command, AnimateCommand) and command.priority == "kiosk" and command.seconds == 2.0


@pytest.mark.parametrize(
    ("verb", "payload", "field"),
    [
        ("explode", "{}", "verb"),
        ("status", "not json", "payload"),
        ("status", b"\xff\xfe", "payload"),
        ("status", "[1, 2]", "payload"),
        ("animate", {"photo": "/etc/passwd"}, "photo"),
        ("animate", {"photo": "relative.png"}, "photo"),
        ("animate", {"photo_b64": "!!!"}, "photo_b64"),
        ("animate", {"photo_b64": base64.b64encode(b"just text").decode()}, "photo_b64"),
        ("animate", {}, "photo"),
        ("cancel", {}, "job_id"),
        ("cancel", {"job_id": "../../x"}, "job_id"),
        ("mode", {"mode": "disco"}, "mode"),
        ("status", {"verbose": True}, "verbose"),
        ("config", {"set": "jobs.queue_size=3"}, "set"),
    ],
)
def test_bad_payload_names_the_field(verb: str, payload: bytes | str | dict, field: str, ctx: CommandContext) -> None:
    assert error_of(verb, payload, ctx).field == field


def test_strings_are_not_numbers(ctx: CommandContext, photos: Path) -> None:
    error = error_of("animate", {"photo": str(photos / "astronaut.png"), "fps": "25"}, ctx)
    assert error.field == "fps" and "integer" in error.message


def test_out_of_range_value_is_refused(ctx: CommandContext, photos: Path) -> None:
    assert error_of("animate", {"photo": str(photos / "astronaut.png"), "fps": 500}, ctx).field == "fps"


def test_path_escaping_by_dotdot_is_outside(ctx: CommandContext, photos: Path) -> None:
    error = error_of("animate", {"photo": f"{photos}/../{photos.name}-elsewhere/x.png"}, ctx)
    assert "outside the allowed folders" in error.message


def test_symlink_out_of_the_folder_is_outside(ctx: CommandContext, photos: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n")
    link = photos / f"link-{tmp_path.name}.png"
    link.symlink_to(secret)
    try:
        assert "outside the allowed folders" in error_of("animate", {"photo": str(link)}, ctx).message
    finally:
        link.unlink()


def test_missing_file_inside_the_folder(ctx: CommandContext, photos: Path) -> None:
    assert error_of("animate", {"photo": str(photos / "nobody.png")}, ctx).message == "no such file"


def test_oversized_payload_is_refused_before_parsing(ctx: CommandContext) -> None:
    error = error_of("status", b"{" + b" " * 200_000 + b"}", ctx)
    assert error.field == "payload" and "over the limit" in error.message


def test_inline_photo_over_the_limit(ctx: CommandContext) -> None:
    big = base64.b64encode(b"\xff\xd8\xff" + b"\0" * 60_000).decode()
    assert "over the limit" in error_of("animate", {"photo_b64": big}, ctx).message


def test_inline_photo_is_accepted(ctx: CommandContext, photos: Path) -> None:
    data = (photos / "grey.png").read_bytes()
    command = parse_command("animate", json.dumps({"photo_b64": base64.b64encode(data).decode()}).encode(), ctx)
    assert isinstance(command, AnimateCommand) and command.photo_bytes() == data


def test_text_and_audio_together_are_refused(ctx: CommandContext, photos: Path) -> None:
    ctx.audio_dirs = [photos]
    doc = {"photo": str(photos / "astronaut.png"), "text": "hi", "audio": str(photos / "grey.png")}
    assert error_of("animate", doc, ctx).field == "audio"


def test_error_keeps_the_request_id(ctx: CommandContext) -> None:
    assert error_of("cancel", {"request_id": "r-7"}, ctx).request_id == "r-7"


def test_empty_payload_means_no_arguments(ctx: CommandContext) -> None:
    assert parse_command("status", b"", ctx).request_id is None


def test_config_changes_arrive_as_tables(ctx: CommandContext) -> None:
    command = parse_command("config", b'{"set": {"jobs": {"queue_size": 3}}, "dry_run": true}', ctx)
    assert isinstance(command, ConfigCommand) and command.set == {"jobs": {"queue_size": 3}} and command.dry_run
