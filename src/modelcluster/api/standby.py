"""The standby runtime's admin contract: the call that tells a warm standby which model to load.

A standby runtime (``STANDBY_FAMILY`` set, no model) has its family's libraries imported, its device
initialised and a warm-up pass done; it answers ``/health`` 503 (``standby``) and serves nothing until a
:class:`LoadOrder` arrives on ``POST`` :data:`ADMIN_LOAD_PATH` with ``Authorization: Bearer <admin token>``.
Then it loads that model as a runtime started for it would, and ``/health`` turns 200 once it can answer. A
standby started with a verifier and no admin token takes the admin call with its own pod credential instead; the
order's ``credential_sha256`` (the borrowing cluster's) then guards every route of the claimed runtime.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from modelcluster.api.modelcluster import MODEL_ID_MAX_LENGTH

ADMIN_LOAD_PATH = "/admin/load"
STANDBY_HEALTH_MESSAGE = "standby: no model loaded yet"


class LoadOrder(BaseModel):
    """Which model a claimed standby serves, and for which task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field(min_length=1, max_length=MODEL_ID_MAX_LENGTH, description="Hub id (org/name) or model dir.")
    task: str = Field(min_length=1, max_length=64, description="The task to serve, one of the family's.")
    credential_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the credential the claimed runtime answers from now on (the borrowing cluster's); "
        "the standby's own when absent.",
    )
