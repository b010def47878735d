"""Ids of the signed orders (rollback) a device has carried out, so none can be replayed.

An id is kept until its order expires: after that the order is refused as expired anyway, so the list
stays as short as the orders still valid.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

from device.files import atomic_write


class SeenOrders:
    def __init__(self, path: Path) -> None:
        self.path = path  # <state>/updates/orders.json: {id: expires}
        self._lock = threading.Lock()

    def _load(self) -> dict[str, float]:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            return {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
        return {}

    def claim(self, order_id: str, expires: float) -> bool:
        """Record the id; False when it was seen before (a replay)."""
        with self._lock:
            now = time.time()
            seen = {k: v for k, v in self._load().items() if v >= now}
            if order_id in seen:
                return False
            seen[order_id] = expires
            atomic_write(self.path, json.dumps(seen, sort_keys=True).encode())
            return True
