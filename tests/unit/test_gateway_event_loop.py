"""The gateway's event loop setting: uvloop by default, the standard loop on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from modelcluster.gateway.event_loop import run_with
from modelcluster.gateway.settings import GatewaySettings


def loop_type(name: str) -> type:
    seen: list[type] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_with(name, main())  # type: ignore[arg-type]
    return seen[0]


def test_uvloop_runs_the_gateway_by_default() -> None:
    assert GatewaySettings().event_loop == "uvloop"
    assert loop_type("uvloop") is uvloop.Loop


def test_the_standard_loop_is_one_setting_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCLUSTER_GATEWAY_EVENT_LOOP", "asyncio")
    name = GatewaySettings().event_loop
    assert name == "asyncio"
    assert not issubclass(loop_type(name), uvloop.Loop)


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCLUSTER_GATEWAY_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        GatewaySettings()
