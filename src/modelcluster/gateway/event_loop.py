"""The gateway's event loop: uvloop by default (``MODELCLUSTER_GATEWAY_EVENT_LOOP=asyncio`` for the standard one).

uvloop runs the gateway's hot path (accepting, parsing, forwarding to pods) with markedly less CPU per request
than the standard library's selector loop (``benchmarks/gateway_overhead.py`` measures it). Where uvloop is not
installed (it is not built for Windows) the standard loop runs, with one log line saying so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Coroutine
from typing import Any, Literal

logger = logging.getLogger(__name__)

EventLoop = Literal["uvloop", "asyncio"]


def run_with(loop: EventLoop, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to completion on ``loop`` (the standard loop when uvloop is asked for but missing)."""
    if loop == "uvloop":
        if importlib.util.find_spec("uvloop") is not None:
            import uvloop

            uvloop.run(main)
            return
        logger.warning("uvloop is not installed: running on the standard asyncio event loop")
    asyncio.run(main)
