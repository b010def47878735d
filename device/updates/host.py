"""What the updater needs from the process it runs in, and nothing more.

The daemon satisfies these structurally; tests can hand the updater any
object that does. Keeping the list short keeps the updater from reaching into the daemon's insides.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from device.config import AppConfig


class Subscriber(Protocol):
    """The MQTT client calls the chunk download makes (paho's Client has them)."""

    def subscribe(self, topic: Any, qos: int = 0) -> Any: ...

    def unsubscribe(self, topic: Any) -> Any: ...


class UpdaterLink(Protocol):
    """The broker connection, as far as the updater uses it."""

    @property
    def connected(self) -> threading.Event: ...

    @property
    def client(self) -> Subscriber: ...

    def publish_json(self, topic: str, doc: dict[str, Any], retain: bool = False) -> Any: ...


@runtime_checkable
class UpdaterHost(Protocol):
    @property
    def config(self) -> AppConfig:
        """The effective config: device identity, MQTT prefix, generator backend, `updates` policy."""
        ...

    @property
    def link(self) -> UpdaterLink | None:
        """The broker connection; None before it is made (or with MQTT off)."""
        ...

    def emit(self, event_type: str, data: dict[str, Any]) -> int | None:
        """Send an event on portrait/<id>/events (stored until the broker takes it)."""
        ...

    def publish_state(self) -> None:
        """Publish the retained state again (installed versions changed)."""
        ...

    def apply_model(self, bundle: Path, keys: list[Any]) -> None:
        """Load the model bundle now at `current` into the running renderer; raises if it cannot."""
        ...

    def apply_content(self, folder: Path) -> None:
        """Use the content bundle now at `current` (portrait, playlist, schedule)."""
        ...


class RollbackRequest(Protocol):
    """The validated `rollback` command: a signed order (see device.updates.job.RollbackOrder)."""

    @property
    def order(self) -> dict[str, Any]: ...

    @property
    def signature(self) -> str: ...

    @property
    def cert(self) -> dict[str, Any]: ...

    @property
    def revocations(self) -> dict[str, Any] | None: ...
