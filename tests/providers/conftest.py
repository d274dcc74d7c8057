"""The providers' stand-ins (:mod:`support.providers`), served from a thread for the whole module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.providers import KEYS, ServerThread, StandIn, start_standins


@pytest.fixture(scope="module")
def servers() -> Iterator[ServerThread]:
    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def standins(servers: ServerThread) -> dict[str, StandIn]:
    return start_standins(servers, KEYS)
