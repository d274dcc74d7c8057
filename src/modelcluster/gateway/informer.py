"""A list-and-watch loop over one kind of object, delivering plain JSON dicts.

The gateway keeps its routing and cluster tables in memory from watches (never an
API call per request). :func:`run_informer` lists, hands every object to the
sink, then watches from the list's resource version; a broken watch resumes from
the last version seen, a 410 Gone lists again, other failures back off (bounded).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from modelcluster.operator.kube import Kube, KubeError

logger = logging.getLogger(__name__)

Body = dict[str, Any]
ListCall = Callable[..., Awaitable[Any]]

WATCH_SECONDS = 240
MAX_BACKOFF_SECONDS = 10.0
GONE = 410


class Sink(Protocol):
    """Where an informer delivers what it sees."""

    def reset(self, items: list[Body]) -> None:
        """Replace everything with a fresh list."""

    def event(self, kind: str, obj: Body) -> None:
        """``ADDED``, ``MODIFIED`` or ``DELETED`` of one object."""


def resource_version(obj: Mapping[str, Any]) -> str | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return str(value) if value else None


async def _list(kube: Kube, call: ListCall, kwargs: Mapping[str, Any]) -> tuple[list[Body], str | None]:
    body = await kube.json(call(**kwargs, _preload_content=False))
    return list(body.get("items") or []), resource_version(body)


async def _watch(kube: Kube, call: ListCall, kwargs: Mapping[str, Any], version: str, sink: Sink) -> str | None:
    """Follow one watch request; the last resource version seen, or None when the apiserver says it is gone."""
    response = await kube.call(
        call(
            **kwargs,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
            _request_timeout=WATCH_SECONDS + 30,
        )
    )
    try:
        if response.status == GONE:
            return None
        if response.status != 200:
            raise KubeError(response.status, (await response.read()).decode(errors="replace")[:200])
        async for line in response.content:
            if not line.strip():
                continue
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == GONE:
                    return None
                raise KubeError(int(obj.get("code") or 0), str(obj.get("message")))
            version = resource_version(obj) or version
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                sink.event(kind, obj)
    finally:
        response.release()
    return version


async def run_informer(kube: Kube, call: ListCall, sink: Sink, synced: asyncio.Event, what: str, **kwargs: Any) -> None:
    """List and watch forever (until cancelled); ``synced`` is set after the first list."""
    backoff = 0.5
    version: str | None = None
    while True:
        try:
            if version is None:
                items, version = await _list(kube, call, kwargs)
                sink.reset(items)
                synced.set()
            if version is not None:
                version = await _watch(kube, call, kwargs, version, sink)
            backoff = 0.5
        except (KubeError, TimeoutError, ValueError) as error:
            logger.warning("watch of %s failed (%s); retrying in %.1fs", what, error, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
