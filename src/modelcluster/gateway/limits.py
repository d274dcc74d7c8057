"""Per-key limits on concurrent requests, counted in one gateway replica.

Each replica counts only the requests it serves itself, so it enforces ``ceil(limit / replicas)``
of a key's limit, where ``replicas`` is set by the gateway from the ready endpoints of its own
Service. Across N replicas a key may thus run up to N - 1 requests more than its limit, and a key
whose requests land unevenly may be refused on one replica before it reaches its limit in total.
"""

from __future__ import annotations

import math


class ConcurrencyLimiter:
    """In-flight request counts per key id; a key with nothing in flight takes no memory."""

    def __init__(self, replicas: int = 1) -> None:
        self._in_flight: dict[str, int] = {}
        self._replicas = 1
        self.replicas = replicas

    @property
    def replicas(self) -> int:
        """How many gateway replicas share each key's limit (at least 1)."""
        return self._replicas

    @replicas.setter
    def replicas(self, value: int) -> None:
        # With no ready endpoint known (starting, or the endpoints not yet read), act alone.
        self._replicas = max(1, value)

    def share(self, limit: int) -> int:
        """This replica's part of a key limit: ``ceil(limit / replicas)``, at least 1."""
        return max(1, math.ceil(limit / self._replicas))

    def try_acquire(self, key_id: str, limit: int) -> bool:
        """Count one more request of ``key_id`` if it stays within this replica's share of ``limit``."""
        count = self._in_flight.get(key_id, 0)
        if count >= self.share(limit):
            return False
        self._in_flight[key_id] = count + 1
        return True

    def release(self, key_id: str) -> None:
        """Count one request of ``key_id`` as finished; releasing a key with nothing in flight does nothing."""
        count = self._in_flight.get(key_id, 0)
        if count <= 1:
            self._in_flight.pop(key_id, None)
        else:
            self._in_flight[key_id] = count - 1

    def in_flight(self, key_id: str) -> int:
        """Requests of ``key_id`` in flight on this replica."""
        return self._in_flight.get(key_id, 0)

    def __len__(self) -> int:
        """How many keys have requests in flight."""
        return len(self._in_flight)
