"""Least-outstanding routing from the gateway's own counters.

The chosen pod's counter is incremented inside :meth:`Balancer.pick` (no await in
between), and released in the caller's ``finally`` on every outcome, so a burst
spreads evenly and counters return to zero. Ties are broken at random. A pod at
its in-flight limit is not picked: the request waits in the hold buffer instead
of flooding a pod that just became ready.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from modelcluster.gateway.endpoints import Endpoint


class Balancer:
    """In-flight requests per pod URL."""

    def __init__(self, per_pod_limit: int, rng: random.Random | None = None) -> None:
        self.per_pod_limit = per_pod_limit
        self._inflight: dict[str, int] = {}
        self._rng = rng or random.Random()

    def inflight(self, endpoint: Endpoint) -> int:
        return self._inflight.get(endpoint.url, 0)

    def pick(self, candidates: Sequence[Endpoint], exclude: frozenset[str] = frozenset()) -> Endpoint | None:
        """The least busy candidate under its limit (counted as taken), or None when all are full."""
        best: list[Endpoint] = []
        lowest = self.per_pod_limit
        for endpoint in candidates:
            if endpoint.url in exclude:
                continue
            count = self._inflight.get(endpoint.url, 0)
            if count < lowest:
                best, lowest = [endpoint], count
            elif count == lowest and count < self.per_pod_limit:
                best.append(endpoint)
        if not best:
            return None
        chosen = best[0] if len(best) == 1 else self._rng.choice(best)
        self._inflight[chosen.url] = lowest + 1
        return chosen

    def release(self, endpoint: Endpoint) -> None:
        count = self._inflight.get(endpoint.url, 0) - 1
        if count > 0:
            self._inflight[endpoint.url] = count
        else:
            self._inflight.pop(endpoint.url, None)

    def total(self) -> int:
        return sum(self._inflight.values())
