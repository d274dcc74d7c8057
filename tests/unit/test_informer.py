"""The informer's watch windows: short right after a list, the full length after that."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from modelcluster.kube.client import Kube
from modelcluster.kube.informer import run_informer
from modelcluster.kube.objects import Body


class Lines:
    """A watch response's body: the given lines, then its end."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for line in self.lines:
            yield line


class Answer:
    def __init__(self, body: Body | None = None, lines: list[bytes] | None = None, status: int = 200) -> None:
        self.status = status
        self.reason = "OK"
        self.body = body or {}
        self.content = Lines(lines or [])

    async def read(self) -> bytes:
        return json.dumps(self.body).encode()

    def release(self) -> None:
        pass


class Api:
    """Lists one object at version 5 and answers every watch with one event, then ends it."""

    def __init__(self, watches_wanted: int) -> None:
        self.calls: list[dict[str, Any]] = []
        self.enough = asyncio.Event()
        self.watches_wanted = watches_wanted

    async def list_things(self, **kwargs: Any) -> Answer:
        await asyncio.sleep(0)  # a request gives the loop its turn, as a real one does
        self.calls.append(kwargs)
        if not kwargs.get("watch"):
            item = {"metadata": {"name": "a", "namespace": "n", "resourceVersion": "5"}}
            return Answer({"metadata": {"resourceVersion": "5"}, "items": [item]})
        watches = [call for call in self.calls if call.get("watch")]
        if len(watches) >= self.watches_wanted:
            self.enough.set()
        version = str(int(kwargs["resource_version"]) + 1)
        event = {
            "type": "MODIFIED",
            "object": {"metadata": {"name": "a", "namespace": "n", "resourceVersion": version}},
        }
        return Answer(lines=[json.dumps(event).encode() + b"\n"])


class StubKube:
    async def call(self, request: Any) -> Any:
        return await request

    async def json(self, request: Any) -> Body:
        answer = await request
        return cast(Body, json.loads(await answer.read()))


class Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def reset(self, items: list[Body]) -> None:
        self.seen.extend(("LIST", item["metadata"]["resourceVersion"]) for item in items)

    def event(self, kind: str, obj: Body) -> None:
        self.seen.append((kind, obj["metadata"]["resourceVersion"]))


async def test_the_first_watch_after_a_list_is_short_and_the_next_resumes_from_the_last_version() -> None:
    api, sink = Api(watches_wanted=3), Sink()
    informer = asyncio.create_task(
        run_informer(
            cast(Kube, StubKube()),
            api.list_things,
            sink,
            asyncio.Event(),
            "things",
            watch_seconds=240,
            first_watch_seconds=20,
        )
    )
    await asyncio.wait_for(api.enough.wait(), timeout=5)
    informer.cancel()
    watches = [call for call in api.calls if call.get("watch")]
    assert [call["timeout_seconds"] for call in watches[:3]] == [20, 240, 240]
    assert [call["resource_version"] for call in watches[:3]] == ["5", "6", "7"]
    assert sink.seen[:3] == [("LIST", "5"), ("MODIFIED", "6"), ("MODIFIED", "7")]
    assert len([call for call in api.calls if not call.get("watch")]) == 1
