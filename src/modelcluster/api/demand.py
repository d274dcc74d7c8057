"""The demand feed: how gateways and runtime pods push per-cluster demand to the operator's autoscaler.

A publisher (each gateway replica, each runtime pod) keeps a :class:`DemandFeed`: the current
demand of every cluster it serves and a version that rises with every change. It serves
``GET /demand?epoch=E&since=V&wait=S``; the answer (:class:`DemandChanges`, JSON) holds only
the clusters whose demand changed after version ``V`` (their current values, not every step in
between) and the clusters it no longer serves. When nothing changed the request waits up to
``S`` seconds for a change (a long poll), so an idle publisher costs nothing and a change
arrives at once.

The answer is *full* (every cluster, ``full: true``) when the subscriber has nothing yet
(``since`` 0), knows another epoch (the publisher restarted: each process start draws a new
one), or asks for a version the publisher can no longer answer by difference (its log of
removals was trimmed, or the version is from the future). A subscriber that gets a full answer
replaces what it held for that publisher; one that loses its connection keeps the last state
for a while and then drops it, and resumes with the version it has. Several subscribers (a new
leader, a benchmark) each keep their own version: the publisher keeps no per-subscriber state.

Counts are integers and times unix seconds. Runtime pods publish one entry, their own queue
and in-flight requests as ``outstanding``, under the key ``["", ""]``: the pod's cluster is what
the subscriber found it by.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from modelcluster.api.errors import error_body

#: The path of the feed on a gateway's metrics port and on a runtime pod's port.
DEMAND_PATH = "/demand"
#: The longest a subscriber may ask an answer to wait for a change.
MAX_WAIT_S = 30.0
#: Removals remembered for answers by difference; an older version gets a full answer.
REMOVALS_KEPT = 4096
#: The key a runtime pod publishes its own demand under.
POD_KEY = ("", "")

Count = Annotated[int, Field(ge=0)]


class ClusterDemand(BaseModel):
    """One cluster's demand as one publisher sees it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    namespace: str
    name: str
    outstanding: Count = 0  # held + in flight (a pod: its queue + in flight)
    held: Count = 0  # waiting for a ready pod
    last_request: float = Field(default=0.0, alias="lastRequest", ge=0)  # latest arrival or completion


class DemandChanges(BaseModel):
    """An answer of the feed: what changed since the subscriber's version, or everything (``full``)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    epoch: str
    version: Count
    full: bool
    clusters: list[ClusterDemand] = []
    removed: list[tuple[str, str]] = []


def parse_query(epoch: str | None, since: str | None, wait: str | None) -> tuple[str, int, float]:
    """The feed's query parameters, checked; :class:`ValueError` with the reason when one is bad."""
    try:
        version = int(since or 0)
        waited = float(wait or 0)
    except ValueError as error:
        raise ValueError("since must be an integer and wait a number of seconds") from error
    if version < 0 or not 0 <= waited <= MAX_WAIT_S:
        raise ValueError(f"since must be >= 0 and wait between 0 and {MAX_WAIT_S:g} seconds")
    return epoch or "", version, waited


class DemandFeed:
    """A publisher's current demand per cluster and a versioned log of changes (one per process)."""

    def __init__(self) -> None:
        self.epoch = uuid.uuid4().hex
        self.version = 0
        # (outstanding, held, last_request) by cluster: plain tuples on the request path, models only in answers.
        self._entries: dict[tuple[str, str], tuple[int, int, float]] = {}
        # Keys in the order of their last change, with that version: an answer walks back only over what changed.
        self._changed: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._removed: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._floor = 0  # answers by difference are possible for versions >= this
        self._event = asyncio.Event()
        self._closed = False

    def set(self, key: tuple[str, str], outstanding: int, held: int, last_request: float) -> None:
        entry = (outstanding, held, last_request)
        if self._entries.get(key) == entry:
            return
        self._entries[key] = entry
        self._removed.pop(key, None)
        self._bump(key, self._changed)

    def remove(self, key: tuple[str, str]) -> None:
        if self._entries.pop(key, None) is None:
            return
        self._changed.pop(key, None)
        self._bump(key, self._removed)
        while len(self._removed) > REMOVALS_KEPT:
            _, version = self._removed.popitem(last=False)
            self._floor = version

    def _bump(self, key: tuple[str, str], log: OrderedDict[tuple[str, str], int]) -> None:
        self.version += 1
        log[key] = self.version
        log.move_to_end(key)
        self._event.set()

    def changes(self, epoch: str, since: int) -> DemandChanges:
        """What changed after ``since`` (of ``epoch``), or a full answer when that cannot be told by difference."""
        if epoch != self.epoch or since <= 0 or since < self._floor or since > self.version:
            everything = [self._demand(key) for key in self._entries]
            return DemandChanges(epoch=self.epoch, version=self.version, full=True, clusters=everything)
        return DemandChanges(
            epoch=self.epoch,
            version=self.version,
            full=False,
            clusters=[self._demand(key) for key in _after(self._changed, since)],
            removed=list(_after(self._removed, since)),
        )

    def _demand(self, key: tuple[str, str]) -> ClusterDemand:
        outstanding, held, last_request = self._entries[key]
        return ClusterDemand.model_construct(
            namespace=key[0], name=key[1], outstanding=outstanding, held=held, last_request=last_request
        )

    def close(self) -> None:
        """Answer waiting and later long polls at once (the publisher is shutting down)."""
        self._closed = True
        self._event.set()

    def pending(self, epoch: str, since: int) -> bool:
        """Whether an answer now would hold anything (always, for a subscriber that needs a full answer)."""
        return epoch != self.epoch or since != self.version

    async def wait(self, epoch: str, since: int, seconds: float) -> DemandChanges:
        """:meth:`changes`, after waiting up to ``seconds`` for one when there is none yet."""
        if not self.pending(epoch, since) and seconds > 0 and not self._closed:
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), seconds)
        return self.changes(epoch, since)


async def answer(feed: DemandFeed, query: Mapping[str, str]) -> tuple[int, bytes]:
    """The HTTP status and JSON body of ``GET /demand`` with ``query``: 400 in the API's error shape when bad."""
    try:
        epoch, since, wait = parse_query(query.get("epoch"), query.get("since"), query.get("wait"))
    except ValueError as error:
        return 400, json.dumps(error_body(str(error))).encode()
    changes = await feed.wait(epoch, since, wait)
    return 200, changes.model_dump_json(by_alias=True).encode()


def demand_url(metrics_url: str) -> str:
    """The feed's URL beside a publisher's ``/metrics`` URL (the same host and port)."""
    base = metrics_url.split("?", 1)[0]
    if base.endswith("/metrics"):
        base = base[: -len("/metrics")]
    return base.rstrip("/") + DEMAND_PATH


def _after(log: OrderedDict[tuple[str, str], int], since: int) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for key in reversed(log):
        if log[key] <= since:
            break
        found.append(key)
    return found
