"""The runtime's admin call, ``POST /admin/load``: who may make it and what it says (pure functions).

Kept apart from the standby app so that an authentication layer can wrap it: :func:`authorized` is the one
check, :func:`parse_load_order` the one parse. A runtime without an admin token refuses every call (403).
"""

from __future__ import annotations

import hmac

from pydantic import ValidationError

from modelcluster.api.errors import ApiError, InputError, Unauthorized
from modelcluster.api.standby import LoadOrder
from modelcluster.api.tasks import task_info

BEARER = "bearer "


class AdminRefused(ApiError):
    """This runtime takes no admin calls."""

    status_code = 403
    kind = "forbidden"


def authorized(header: str | None, token: str | None) -> None:
    """Refuse the call unless ``header`` is ``Bearer <token>`` (constant-time compare); no token: refuse all."""
    if token is None:
        raise AdminRefused("this runtime takes no admin calls (no ADMIN_TOKEN)")
    given = header or ""
    if not given.lower().startswith(BEARER) or not hmac.compare_digest(given[len(BEARER) :].encode(), token.encode()):
        raise Unauthorized("the admin call needs Authorization: Bearer <admin token>")


def parse_load_order(raw: bytes, family: str) -> LoadOrder:
    """The body of a load call; 422 for a malformed body or a task the standby's family does not serve."""
    try:
        order = LoadOrder.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        raise InputError(f"invalid load order: {problems}") from None
    try:
        info = task_info(order.task)
    except KeyError:
        raise InputError(f"unknown task {order.task!r}") from None
    if info.family != family:
        raise InputError(f"task {order.task!r} is served by the {info.family} family, not by this {family} standby")
    return order
