"""The gateway's Kubernetes calls as answers of the HTTP API.

A missing object answers 404, an existing one 409. The apiserver's own words reach the caller only
when they are about the body the caller sent: a 422 (the CRD's OpenAPI and CEL validation) of a
call made with ``caller_body=True`` (creating or patching the caller's cluster). Every other failure
answers a generic message with a request id: another 400 or 422 answers 422 for a caller's body and
500 for one the gateway made itself, anything else 503. The details (which can name the gateway's
service account, its permissions, the apiserver's address) go to the log under that id only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable
from typing import TypeVar

from modelcluster.api.errors import ApiError, Conflict, InputError, NotFound, QuotaExceeded, Unavailable
from modelcluster.kube.client import KubeError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: The apiserver's words when a ResourceQuota refuses an object.
EXCEEDED_QUOTA = "exceeded quota"


def new_request_id() -> str:
    """An id that ties a generic answer to the log line with the details."""
    return uuid.uuid4().hex[:16]


def api_error(error: KubeError, what: str, *, caller_body: bool = False) -> ApiError:
    """The HTTP API's error for a failed Kubernetes call about ``what``.

    ``caller_body``: the call sent a body made from the caller's request, so the apiserver's
    validation message (422) is about the caller's own input and is passed on.
    """
    if error.status == 404:
        return NotFound(f"{what} not found")
    if error.status == 409:
        return Conflict(f"{what} already exists")
    if error.status == 422 and caller_body:
        return InputError(error.message)
    if error.status == 403 and caller_body and EXCEEDED_QUOTA in error.message:
        # The namespace's ResourceQuota (a Tenant's) refused the caller's cluster: its words name the quota.
        return QuotaExceeded(f"quota exceeded: {error.message}")
    request_id = new_request_id()
    logger.warning("the Kubernetes API failed a call about %s (request %s): %s", what, request_id, error)
    if error.status in (400, 422):
        if caller_body:
            return InputError(f"the Kubernetes API refused the {what} as sent (request {request_id})")
        return ApiError(f"the Kubernetes API refused the gateway's request about {what} (request {request_id})")
    return Unavailable(f"the Kubernetes API is unavailable (request {request_id})")


async def answered(request: Awaitable[_T], what: str, *, caller_body: bool = False) -> _T:
    """Await a Kubernetes call about ``what``; its failure raises the HTTP API's error (see :func:`api_error`)."""
    try:
        return await request
    except KubeError as error:
        raise api_error(error, what, caller_body=caller_body) from error
