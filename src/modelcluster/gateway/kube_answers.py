"""The gateway's Kubernetes calls as answers of the HTTP API.

The apiserver's validation message answers 422, a missing object 404, an existing one 409,
anything else 503.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from modelcluster.api.errors import ApiError, Conflict, InputError, NotFound, Unavailable
from modelcluster.kube.client import KubeError

_T = TypeVar("_T")


def api_error(error: KubeError, what: str) -> ApiError:
    """The HTTP API's error for a failed Kubernetes call about ``what``."""
    if error.status == 404:
        return NotFound(f"{what} not found")
    if error.status == 409:
        return Conflict(f"{what} already exists")
    if error.status in (400, 422):
        return InputError(str(error).split(": ", 1)[-1])
    return Unavailable(f"the Kubernetes API is unavailable: {error}")


async def answered(request: Awaitable[_T], what: str) -> _T:
    """Await a Kubernetes call about ``what``; its failure raises the HTTP API's error."""
    try:
        return await request
    except KubeError as error:
        raise api_error(error, what) from error
