"""How many gateway replicas share each key's limit: the ready endpoints of the gateway's own Service.

Each replica counts only the requests it serves itself (:mod:`.limits`), so it enforces ``ceil(limit / N)``
of a key's limit, N being the replicas that take traffic now. N comes from the EndpointSlices of the gateway's
Service (``--peers-service``), which the EndpointSlice controller keeps: a replica that starts, stops, or turns
unready (its keys stale, say) changes N within a watch event, and every replica's share follows. Scaling the
gateway therefore no longer multiplies every key's limit, as a static ``--replicas`` did.

Why not an exact shared count: that needs a store all replicas write on every request (a round trip on the
hot path, and a single point of failure for every tenant). The split is exact in total when a key's requests
spread evenly (the Service balances connections); at worst a key runs N - 1 requests over its limit in total, or
is refused on one replica while another has room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from modelcluster.kube.objects import Body, metadata_of

logger = logging.getLogger(__name__)


def ready_addresses(slice_: Mapping[str, Any]) -> set[str]:
    """The addresses of a slice's ready, non-terminating endpoints."""
    found: set[str] = set()
    for endpoint in slice_.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        found.update(str(address) for address in endpoint.get("addresses") or [])
    return found


class Peers:
    """The ready replicas of the gateway, from its Service's EndpointSlices (an informer's sink).

    ``on_count`` hears the new count whenever it changes (at least 1: with none known, a replica acts alone).
    """

    def __init__(self, on_count: Callable[[int], None]) -> None:
        self.on_count = on_count
        self._slices: dict[str, set[str]] = {}
        self.count = 1

    def reset(self, items: list[Body]) -> None:
        self._slices = {str(metadata_of(item).get("name")): ready_addresses(item) for item in items}
        self._changed()

    def event(self, kind: str, obj: Body) -> None:
        name = str(metadata_of(obj).get("name"))
        if kind == "DELETED":
            self._slices.pop(name, None)
        else:
            self._slices[name] = ready_addresses(obj)
        self._changed()

    def _changed(self) -> None:
        count = max(1, len(set().union(*self._slices.values())) if self._slices else 0)
        if count != self.count:
            logger.info("%d gateway replicas share each key's limit", count)
            self.count = count
            self.on_count(count)
