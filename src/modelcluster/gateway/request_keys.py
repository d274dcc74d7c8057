"""What the auth middleware sets on a request for the middlewares and handlers after it."""

from __future__ import annotations

from aiohttp import web

#: The caller's tenant namespace.
TENANT = web.RequestKey("tenant", str)
#: The id of the caller's API key.
KEY_ID = web.RequestKey("key_id", str)
