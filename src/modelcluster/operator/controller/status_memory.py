"""The operator's last status write of each cluster, kept until the watched store shows it.

The store learns of a status write only through the watch, a little later. A reconcile in
between (a child's event, a recheck) would derive the status from the older copy, find it
different from what it derives and write the same status again. So a write is remembered with
the resourceVersion the apiserver answered; while the store's copy is older than that, the status
is taken as written (:func:`as_written`), and once the store has caught up the memory goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelcluster.kube.objects import metadata_of

Body = dict[str, Any]


@dataclass(frozen=True)
class WrittenStatus:
    """A status write: the cluster it was for (its uid), the version it made, the fields it set."""

    uid: str
    resource_version: str
    status: Mapping[str, Any]


def written_status(
    body: Mapping[str, Any], answered: Mapping[str, Any] | None, status: Mapping[str, Any]
) -> WrittenStatus | None:
    """What to remember of writing ``status`` to ``body``'s cluster, given the apiserver's answer (None when the
    answer names no version: then nothing is remembered and the store is trusted)."""
    version = metadata_of(answered or {}).get("resourceVersion")
    if not version:
        return None
    return WrittenStatus(str(metadata_of(body).get("uid") or ""), str(version), dict(status))


def caught_up(body: Mapping[str, Any], written: WrittenStatus) -> bool:
    """Whether the store's ``body`` shows the write: the same cluster at its version or later.

    A version that is not a number is never compared: the store's copy is trusted then.
    """
    metadata = metadata_of(body)
    if str(metadata.get("uid") or "") != written.uid:
        return True  # another cluster of the name: the write was not to it
    try:
        return int(str(metadata.get("resourceVersion") or "")) >= int(written.resource_version)
    except ValueError:
        return True


def as_written(body: Mapping[str, Any], written: WrittenStatus, foreign: frozenset[str]) -> Body:
    """``body`` with its status as the write left it: the written fields, and the ``foreign`` fields (other writers'
    own, which the write did not touch) as the store has them."""
    stored = body.get("status") or {}
    status = {key: value for key, value in stored.items() if key in foreign} | dict(written.status)
    return {**body, "status": status}
