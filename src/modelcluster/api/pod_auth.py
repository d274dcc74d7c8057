"""Pod credentials: what a caller of a model pod presents, and how the pod checks it.

Every model pod answers ``/run``, ``/status``, ``/metrics`` (and any admin endpoint) only to a caller presenting
``Authorization: Bearer <credential>`` for *its* cluster. The credential of a cluster is
``HMAC-SHA256(signing key, "ModelCluster/<namespace>/<name>/<uid>")``, hex: the operator and the gateway share
the signing key (the Secret :data:`SIGNING_KEY_SECRET` of the platform namespace, given to both as
:data:`SIGNING_KEY_ENV`), so each derives any cluster's credential without storing or reading one. The uid makes
a re-created cluster of the same name a new subject.

The pod never holds the credential itself, only its SHA-256 (:func:`verifier_of`), set by the operator in the
pod template's :data:`VERIFIER_ENV`. Whoever reads the Deployment (a tenant with ``get`` on it, say) learns a
hash of a 256-bit value: no use for calling the pod, and nothing about another cluster's credential, which
needs the signing key. The check is one hash and one constant-time comparison (:func:`accepts`).

Other subjects (a warm-pool pod, say) take their own ``kind``: :meth:`CredentialIssuer.credential` signs any
``kind/namespace/name/uid``, and credentials of different kinds never coincide.

Pure: no I/O, nothing logged. Callers must never log a credential or the signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import re

#: The environment variable that carries the signing key to the operator and the gateway.
SIGNING_KEY_ENV = "MODELCLUSTER_POD_AUTH_KEY"
#: The Secret (platform namespace) holding the signing key under :data:`SIGNING_KEY_FIELD`.
SIGNING_KEY_SECRET = "modelcluster-pod-auth"
SIGNING_KEY_FIELD = "key"
#: Shortest signing key accepted (characters): 32 random URL-safe characters are 190 bits.
MIN_SIGNING_KEY_LENGTH = 32
#: The environment variable of a model pod holding the SHA-256 of its cluster's credential.
VERIFIER_ENV = "CREDENTIAL_SHA256"
AUTHORIZATION_HEADER = "Authorization"
SCHEME = "Bearer"
CLUSTER_KIND = "ModelCluster"
#: Longer header values are never credentials: refused before any hashing.
MAX_CREDENTIAL_LENGTH = 128

_VERIFIER = re.compile(r"[0-9a-f]{64}")


class InvalidSigningKey(ValueError):
    """A signing key too short (or empty) to sign credentials with."""


def check_signing_key(key: str) -> str:
    """``key`` when it can sign credentials, else raise :class:`InvalidSigningKey` (the key is never shown)."""
    if len(key.strip()) < MIN_SIGNING_KEY_LENGTH:
        raise InvalidSigningKey(
            f"the pod credential signing key must have at least {MIN_SIGNING_KEY_LENGTH} characters "
            f"(it has {len(key.strip())})"
        )
    return key.strip()


def is_verifier(text: str) -> bool:
    """Whether ``text`` has the form of a verifier: 64 lowercase hex digits."""
    return _VERIFIER.fullmatch(text) is not None


def verifier_of(credential: str) -> str:
    """The SHA-256 of a credential, hex: what the pod keeps to check it."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


def presented(header: str | None) -> str | None:
    """The credential in an ``Authorization: Bearer <credential>`` header, else ``None``."""
    if header is None:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != SCHEME.lower():
        return None
    credential = parts[1]
    if len(credential) > MAX_CREDENTIAL_LENGTH or not (credential.isascii() and credential.isprintable()):
        return None
    return credential


def accepts(verifier: str, header: str | None) -> bool:
    """Whether the ``Authorization`` header presents the credential whose SHA-256 is ``verifier``.

    The hashes are compared in constant time, and a missing or malformed header is compared too, against a
    hash no credential has, so a refusal takes as long whatever was sent.
    """
    credential = presented(header)
    given = verifier_of(credential) if credential is not None else "-" * 64
    return hmac.compare_digest(given.encode(), verifier.encode()) and credential is not None


def authorization(credential: str) -> dict[str, str]:
    """The request header presenting ``credential``."""
    return {AUTHORIZATION_HEADER: f"{SCHEME} {credential}"}


class CredentialIssuer:
    """Derives pod credentials from the signing key (held here only; never part of ``repr``)."""

    __slots__ = ("_key",)

    def __init__(self, signing_key: str) -> None:
        self._key = check_signing_key(signing_key).encode("utf-8")

    def __repr__(self) -> str:
        return "CredentialIssuer(<signing key>)"

    def credential(self, namespace: str, name: str, uid: str, kind: str = CLUSTER_KIND) -> str:
        """The credential of object ``kind`` ``namespace``/``name`` with ``uid`` (a ModelCluster by default)."""
        if not (namespace and name and uid and kind):
            raise ValueError("a credential needs a kind, a namespace, a name and a uid")
        for part in (kind, namespace, name, uid):
            if "/" in part:
                raise ValueError(f"{part!r}: parts of a credential subject hold no '/'")
        subject = f"{kind}/{namespace}/{name}/{uid}".encode()
        return hmac.new(self._key, subject, hashlib.sha256).hexdigest()

    def verifier(self, namespace: str, name: str, uid: str, kind: str = CLUSTER_KIND) -> str:
        """The SHA-256 of that credential: what the operator gives the object's pods."""
        return verifier_of(self.credential(namespace, name, uid, kind))

    def headers(self, namespace: str, name: str, uid: str, kind: str = CLUSTER_KIND) -> dict[str, str]:
        """The ``Authorization`` header for calling a pod of that object."""
        return authorization(self.credential(namespace, name, uid, kind))
