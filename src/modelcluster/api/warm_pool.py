"""The warm pool's contract: how a standby pod is labelled, claimed and authenticated.

A warm pool holds standby runtime pods of one (family, tier) in a namespace (``modelcluster.runtime.standby``:
libraries imported, device initialised, no model). The operator keeps it filled; when a stopped cluster of that
family and tier is woken it *claims* one: it relabels the pod with the cluster's selector labels (so the cluster's
Service and EndpointSlice list it and the gateway's first-answer probe finds it) and ``POST``\\s a
:class:`~modelcluster.api.standby.LoadOrder` naming the model and the verifier of the cluster's pod credential.
From then on the pod answers only the cluster's callers, as the cluster's own pods do.

A standby's own credential (the admin call, ``/status``) is signed for :data:`STANDBY_KIND` over the pod's
namespace, its name and the nonce in :data:`NONCE_ANNOTATION` (:func:`standby_subject`): no tenant's credential
opens it, and it opens no cluster's pod.
"""

from __future__ import annotations

#: The pool a pod belongs to (value: :func:`pool_name`), kept after a claim (the operator's pool watch selects it).
POOL_LABEL = "modelcluster.dev/pool"
#: :data:`STANDBY` while the pod waits in its pool, :data:`CLAIMED` once a cluster borrowed it.
STATE_LABEL = "modelcluster.dev/pool-state"
STANDBY = "standby"
CLAIMED = "claimed"
#: The cluster that borrowed the pod (its name; the pod is in the cluster's namespace).
BORROWED_BY_LABEL = "modelcluster.dev/borrowed-by"
#: The value of ``app.kubernetes.io/name`` on a pod waiting in its pool (a cluster's Service selects none).
STANDBY_APP_NAME = "modelcluster-standby"
#: A random value per standby pod, part of its credential's subject.
NONCE_ANNOTATION = "modelcluster.dev/standby-nonce"
#: The wake (the cluster's wake annotation value) a claim answered, and when the claim was made (RFC 3339).
CLAIMED_FOR_WAKE_ANNOTATION = "modelcluster.dev/claimed-for-wake"
CLAIMED_AT_ANNOTATION = "modelcluster.dev/claimed-at"
#: The credential kind of standby pods (see :class:`modelcluster.api.pod_auth.CredentialIssuer`).
STANDBY_KIND = "StandbyPod"
#: The standby's path that says whether it is warm and unclaimed (200) or not (503); open, as ``/health`` is.
STANDBY_PATH = "/standby"


def pool_name(family: str, tier: str) -> str:
    """The pool of ``family`` on ``tier``, as it appears in :data:`POOL_LABEL` and in pod names."""
    return f"{family}-{tier}"


def standby_subject(namespace: str, pod: str, nonce: str) -> tuple[str, str, str, str]:
    """The ``(namespace, name, uid, kind)`` a standby pod's credential is signed over."""
    return (namespace, pod, nonce, STANDBY_KIND)
