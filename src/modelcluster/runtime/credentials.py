"""The pod credential check: every route but the kubelet's probe answers only to its cluster's callers.

:class:`CredentialMiddleware` wraps the whole app, so a route added later (an admin endpoint) is covered
without asking: a request to any path other than :data:`OPEN_PATHS` must carry ``Authorization: Bearer
<credential>`` whose SHA-256 is the pod's verifier (``CREDENTIAL_SHA256``, set by the operator; see
:mod:`modelcluster.api.pod_auth`), else it gets 401 in the runtime's error shape before any route runs.
``/health`` stays open: the kubelet probes it with no credential, and it says only ready or not.

A runtime started without a verifier (by hand, in a test) serves everyone and says so at start.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from modelcluster.api import error_body
from modelcluster.api.pod_auth import accepts

#: Paths served without a credential: the kubelet's probe.
OPEN_PATHS = frozenset({"/health"})
UNAUTHORIZED = json.dumps(error_body("Unauthorized")).encode()


class CredentialMiddleware:
    """401 for any request (but :data:`OPEN_PATHS`) without the credential whose SHA-256 is ``verifier``."""

    def __init__(self, app: ASGIApp, verifier: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.verifier = verifier
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)  # lifespan, and the probe
            return
        values = [value for name, value in scope["headers"] if name == b"authorization"]
        header = values[0].decode("latin-1") if len(values) == 1 else None
        if accepts(self.verifier, header):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # refused before the handshake: HTTP 403
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(UNAUTHORIZED)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
