"""The uvicorn server of the runtime, with a graceful drain on SIGTERM.

SIGTERM starts the drain: ``/health`` turns 503 at once (readiness fails, the pod leaves
its Service's endpoints) while requests are still served for ``drain_delay_s``, the time
endpoint removal takes to reach every router. Then uvicorn's graceful shutdown stops
accepting connections and waits, up to ``drain_timeout_s``, for in-flight requests and
streams to finish; the process exits 0. SIGINT skips the delay (an interactive stop).
A second signal of either kind ends the process at once.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)


def drain_delay(sig: int, delay_s: float) -> float:
    """How long a first signal keeps the server accepting requests: SIGTERM waits for routers, SIGINT does not."""
    return delay_s if sig == signal.SIGTERM else 0.0


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_delay_s: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_delay_s = drain_delay_s
        self.on_drain = on_drain
        self.stop_accepting_at: float | None = None
        self.drain_announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: only plain assignments here (metrics take locks); on_tick does the rest.
        if self.stop_accepting_at is not None:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)
            return
        self.stop_accepting_at = time.monotonic() + drain_delay(sig, self.drain_delay_s)

    async def on_tick(self, counter: int) -> bool:
        if self.stop_accepting_at is not None:
            if not self.drain_announced:
                self.drain_announced = True
                self.on_drain()
                logger.info(
                    "draining: unready now, stop accepting in %.1fs, then wait up to %gs for in-flight requests",
                    max(0.0, self.stop_accepting_at - time.monotonic()),
                    self.config.timeout_graceful_shutdown,
                )
            if time.monotonic() >= self.stop_accepting_at:
                self.should_exit = True
        return await super().on_tick(counter)
