"""kopf settings, each set on purpose."""

from __future__ import annotations

import logging

import kopf

from modelcluster.api import GROUP
from modelcluster.operator.config import OperatorConfig


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Apply the operator's choices to kopf's settings (called from the startup handler)."""
    # Handler progress and the last handled spec live in annotations under our own prefix:
    # nothing kopf-specific lands in the status, whose schema the operator owns.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    # Kubernetes events only for warnings and errors: a burst of creates must not
    # double the write load with informational events.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "modelcluster-operator"
    settings.posting.reporting_instance = config.leader_election.identity
    # Ask the server to end each watch after ~5 minutes and reconnect; a client-side
    # timeout a bit longer catches silently dead connections.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 30
    # Bounded concurrency: at most this many objects are handled at once per resource.
    # A per-object worker holds its slot until it has been idle for `idle_timeout`, so
    # the slots turn over at about worker_limit / idle_timeout objects per second: keep
    # the idle time short, or a burst of creates queues behind workers that only wait.
    settings.queueing.worker_limit = config.workers
    settings.queueing.idle_timeout = 1.0
    settings.execution.max_workers = 4
    # One active operator is guaranteed by the Lease; kopf's peering stays off.
    settings.peering.standalone = True
    settings.peering.mandatory = False
    # The resources are fixed at start: no list/watch of CRDs and namespaces needed.
    settings.scanning.disabled = True
