"""The two kinds of failure the CLI and the daemon tell apart."""

from __future__ import annotations

from typing import Any


class PortraitError(Exception):
    """Internal failure: exit code 1."""

    exit_code = 1


class BadInput(PortraitError):
    """The user's input is wrong (a file, a value): exit code 2.

    The message names the input and says what is wrong with it.
    """

    exit_code = 2


class CommandError(Exception):
    """A command over the network is refused: the reply names the field and what is wrong."""

    def __init__(self, field: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.request_id = request_id

    def reply(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}
