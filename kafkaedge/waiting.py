"""Wait for a condition with a deadline: the one polling loop the edge and its tools share."""
from __future__ import annotations

import threading
import time

from refmesh.errors import MeshError


class ProcessError(MeshError):
    """A supervised process failed to start or a condition was not met in time."""


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ProcessError(f"timed out after {timeout:.0f} s waiting for {what}")
        event.wait(interval)
