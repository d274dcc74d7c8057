"""Liveness and readiness endpoints on their own port.

``/healthz`` answers from the event loop, so a blocked loop fails the probe.
``/readyz`` answers 200 only on the leader, so standbys show as not ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass
class HealthState:
    leader: bool = False


async def start_health_server(port: int, state: HealthState) -> web.AppRunner:
    """Serve the probes on ``port``; the caller cleans the returned runner up."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(text="leader" if state.leader else "standby", status=200 if state.leader else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=port).start()
    return runner
