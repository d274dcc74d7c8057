"""A list-and-watch loop over one kind of object, delivering plain JSON dicts.

The gateway keeps its routing, cluster and key tables in memory from watches (never
an API call per request), and the operator its store. :func:`run_informer` lists (in pages), hands every object
to the sink, then watches from the list's resource version; a broken watch resumes
from the last version seen, a 410 Gone lists again, other failures back off (bounded).
``progress`` (optional) is called whenever the apiserver confirms that the sink is current: after a
list, when a watch request is accepted, and on every event or bookmark of a watch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from modelcluster.kube.client import Kube, KubeError
from modelcluster.kube.objects import Body, metadata_of, resource_version

logger = logging.getLogger(__name__)

ListCall = Callable[..., Awaitable[Any]]
Progress = Callable[[], None]

WATCH_SECONDS = 240
LIST_PAGE_SIZE = 500
GONE = 410


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after consecutive failures: doubling from ``initial`` up to ``maximum``."""

    initial: float = 0.5
    maximum: float = 10.0

    def after(self, delay: float) -> float:
        return min(self.maximum, delay * 2)


DEFAULT_BACKOFF = Backoff()


class Sink(Protocol):
    """Where an informer delivers what it sees."""

    def reset(self, items: list[Body]) -> None:
        """Replace everything with a fresh list."""

    def event(self, kind: str, obj: Body) -> None:
        """``ADDED``, ``MODIFIED`` or ``DELETED`` of one object."""


async def list_objects(
    kube: Kube, call: ListCall, *, page_size: int = LIST_PAGE_SIZE, **kwargs: Any
) -> tuple[list[Body], str]:
    """Every object ``call`` lists, page by page, and the resource version of that (consistent) list."""
    items: list[Body] = []
    paging: dict[str, Any] = {"limit": page_size}
    while True:
        body = await kube.json(call(**kwargs, **paging, _preload_content=False))
        items.extend(body.get("items") or [])
        metadata = metadata_of(body)
        if not metadata.get("continue"):
            break
        paging["_continue"] = str(metadata["continue"])
    version = resource_version(body)
    if version is None:
        raise KubeError(0, "the list has no resourceVersion to watch from")
    return items, version


def _nothing() -> None:
    pass


async def _watch(
    kube: Kube,
    call: ListCall,
    kwargs: Mapping[str, Any],
    version: str,
    sink: Sink,
    seconds: int,
    progress: Progress = _nothing,
) -> AsyncIterator[str | None]:
    """Follow one watch request, yielding the resource version after each event; None when it is gone."""
    response = await kube.call(
        call(
            **kwargs,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=seconds + 30,
        )
    )
    try:
        if response.status == GONE:
            yield None
            return
        if response.status != 200:
            raise KubeError(response.status, (await response.read()).decode(errors="replace")[:200])
        progress()  # the apiserver accepted the watch from ``version``: the sink is current as of now
        async for line in response.content:
            if not line.strip():
                continue
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == GONE:
                    yield None
                    return
                raise KubeError(int(obj.get("code") or 0), str(obj.get("message")))
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                sink.event(kind, obj)
            progress()  # an event or a bookmark: the sink is current up to it
            seen = resource_version(obj)
            if seen is not None:
                yield seen
    except aiohttp.ClientError as error:  # the connection broke while streaming
        raise KubeError(0, f"{type(error).__name__}: {error}") from error
    finally:
        response.release()


async def run_informer(
    kube: Kube,
    call: ListCall,
    sink: Sink,
    synced: asyncio.Event,
    what: str,
    *,
    version: str | None = None,
    page_size: int = LIST_PAGE_SIZE,
    watch_seconds: int = WATCH_SECONDS,
    backoff: Backoff = DEFAULT_BACKOFF,
    progress: Progress | None = None,
    **kwargs: Any,
) -> None:
    """List and watch forever (until cancelled); ``synced`` is set once the sink holds a full list.

    ``progress`` hears every confirmation that the sink is current (a list, an accepted watch, an
    event, a bookmark), for a caller that must know how fresh its table is.

    With ``version`` (the caller has just listed into the sink) it watches from there without listing
    first. ``kwargs`` go to every call (namespace-wide ``call`` needs none, a selector goes here).
    """
    confirmed = progress or _nothing
    if version is not None:
        synced.set()
    delay = backoff.initial
    while True:
        attempt_from = version
        try:
            if version is None:
                items, version = await list_objects(kube, call, page_size=page_size, **kwargs)
                sink.reset(items)
                confirmed()
                synced.set()
            async for seen in _watch(kube, call, kwargs, version, sink, watch_seconds, confirmed):
                version = seen  # a broken watch resumes from here; None lists again
            if version is None:
                logger.info("the watch of %s expired; listing again", what)
            delay = backoff.initial
            continue
        except (KubeError, TimeoutError, ValueError) as error:
            if version != attempt_from:
                delay = backoff.initial  # it worked for a while: a fresh failure
            logger.warning("watch of %s failed (%s); retrying in %.1fs", what, error, delay)
        await asyncio.sleep(delay)
        delay = backoff.after(delay)
