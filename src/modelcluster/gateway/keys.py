"""API keys: their format, the ``Authorization`` header, and the Secrets that hold their hashes.

A key reads ``mc_<id>_<secret>``: ``id`` is 12 lowercase hex digits, public, and names
the Secret ``modelcluster-key-<id>`` in the gateway's namespace; ``secret`` is 43
URL-safe characters from :func:`secrets.token_urlsafe`. The Secret holds the SHA-256
of the whole key (never the key), the tenant namespace the key acts in and the
key's limit of concurrent requests. Keys are random with 256 bits of entropy, so a
plain SHA-256 suffices (no salt or slow hash is needed against guessing).

Everything here is pure: no I/O, nothing logged. Callers must never log a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelcluster.gateway.tenancy import DEFAULT_KEY_NAMESPACE, name_refusal, tenant_refusal
from modelcluster.gateway.tenancy import TENANT_LABEL as TENANT_LABEL
from modelcluster.kube.objects import metadata_of

KEY_PREFIX = "mc"
KEY_ID_LENGTH = 12
SECRET_NAME_PREFIX = "modelcluster-key-"

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "modelcluster"
API_KEY_LABEL = "modelcluster.dev/api-key"
#: The label selector of every key Secret.
KEY_SELECTOR = f"{API_KEY_LABEL}=true"

SHA256_FIELD = "sha256"
TENANT_FIELD = "tenant"
CONCURRENCY_FIELD = "concurrency"

#: Authorization schemes accepted before a key: ``Key`` (the Bytez SDKs) and ``Bearer`` (the OpenAI SDKs).
SCHEMES = frozenset({"key", "bearer"})
#: Longer credentials are never keys; they are refused before any hashing.
MAX_CREDENTIAL_LENGTH = 256

_KEY = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{KEY_ID_LENGTH}}})_[A-Za-z0-9_-]{{32,128}}")
_KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_LENGTH}}}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONCURRENCY = re.compile(r"[1-9][0-9]{0,8}")


class InvalidTenant(ValueError):
    """A tenant name that cannot name a tenant namespace."""


class InvalidKeySecret(ValueError):
    """A Secret labelled as an API key whose contents are not a valid key record."""


def generate_key() -> str:
    """A new random key, ``mc_<12 hex digits>_<43 URL-safe characters>``."""
    return f"{KEY_PREFIX}_{secrets.token_hex(KEY_ID_LENGTH // 2)}_{secrets.token_urlsafe(32)}"


def parse_authorization(header: str | None) -> str | None:
    """The credential in an ``Authorization`` header: ``Key <key>``, ``Bearer <key>`` or a bare ``<key>``.

    The scheme is matched case-insensitively. Anything else (no header, an empty one,
    another scheme, extra words, non-printable or non-ASCII characters, an overlong
    credential) gives ``None``. The credential is not checked to be a well-formed key
    here: :func:`key_id_of` does that.
    """
    if header is None:
        return None
    parts = header.split()
    if len(parts) == 2 and parts[0].lower() in SCHEMES:
        credential = parts[1]
    elif len(parts) == 1 and parts[0].lower() not in SCHEMES:
        credential = parts[0]
    else:
        return None
    if len(credential) > MAX_CREDENTIAL_LENGTH or not (credential.isascii() and credential.isprintable()):
        return None
    return credential


def key_id_of(key: str) -> str | None:
    """The public id of a well-formed key, else ``None``."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the form of a key id."""
    return _KEY_ID.fullmatch(text) is not None


def hash_key(key: str) -> str:
    """The SHA-256 of the whole key, as 64 lowercase hex digits."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def secret_name(key_id: str) -> str:
    """The name of the Secret that holds the key with this id."""
    return f"{SECRET_NAME_PREFIX}{key_id}"


def key_id_of_secret_name(name: str) -> str | None:
    """The key id in a key Secret's name, else ``None``."""
    if not name.startswith(SECRET_NAME_PREFIX):
        return None
    key_id = name[len(SECRET_NAME_PREFIX) :]
    return key_id if is_key_id(key_id) else None


def validate_tenant_name(name: str) -> str:
    """``name`` when it is shaped like a namespace name, else raise :class:`InvalidTenant` (no reserved names check)."""
    reason = name_refusal(name)
    if reason is not None:
        raise InvalidTenant(f"invalid tenant name {name!r}: {reason}")
    return name


def validate_tenant(name: str, key_namespace: str = DEFAULT_KEY_NAMESPACE) -> str:
    """``name`` when it may name a tenant namespace, else raise :class:`InvalidTenant` saying why.

    The rule is :func:`modelcluster.gateway.tenancy.tenant_refusal`: system and platform namespaces
    and the namespace of the key Secrets (``key_namespace``) are never tenants.
    """
    reason = tenant_refusal(name, key_namespace)
    if reason is not None:
        raise InvalidTenant(f"invalid tenant name {name!r}: {reason}")
    return name


def validate_concurrency(concurrency: int) -> int:
    """``concurrency`` when it is a usable limit (at least 1), else raise :class:`ValueError`."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"invalid concurrency {concurrency!r}: it must be a whole number of at least 1")
    return concurrency


def _encode(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _decode(data: Mapping[str, Any], field_name: str) -> str:
    value = data.get(field_name)
    if not isinstance(value, str):
        raise InvalidKeySecret(f"data.{field_name} is missing")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as error:
        raise InvalidKeySecret(f"data.{field_name} is not base64 of UTF-8 text") from error


def key_labels(tenant: str) -> dict[str, str]:
    """The labels of a key Secret."""
    return {PART_OF_LABEL: PART_OF, API_KEY_LABEL: "true", TENANT_LABEL: tenant}


def build_key_secret(key: str, tenant: str, concurrency: int, namespace: str) -> dict[str, Any]:
    """The Secret (JSON body) in ``namespace`` binding ``key`` to ``tenant`` with a concurrency limit.

    It holds only the hash. ``tenant`` must pass :func:`validate_tenant` with ``namespace`` as the key namespace.
    """
    key_id = key_id_of(key)
    if key_id is None:
        raise ValueError("not a well-formed API key")
    validate_tenant(tenant, namespace)
    validate_concurrency(concurrency)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": secret_name(key_id), "namespace": namespace, "labels": key_labels(tenant)},
        "data": {
            SHA256_FIELD: _encode(hash_key(key)),
            TENANT_FIELD: _encode(tenant),
            CONCURRENCY_FIELD: _encode(str(concurrency)),
        },
    }


def _created(metadata: Mapping[str, Any]) -> datetime | None:
    stamp = metadata.get("creationTimestamp")
    if isinstance(stamp, datetime):
        return stamp
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp)
        except ValueError as error:
            raise InvalidKeySecret(f"metadata.creationTimestamp {stamp!r} is not a timestamp") from error
    return None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What the gateway knows of one key: its id, tenant, limit and hash (never the key)."""

    key_id: str
    tenant: str
    concurrency: int
    sha256: str = field(repr=False)
    created: datetime | None = None

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> ApiKeyRecord:
        """Parse a key Secret (a plain JSON dict with base64 ``data``); raise :class:`InvalidKeySecret`.

        A tenant that can never be one (``default``, a system namespace, the Secret's own namespace:
        :func:`validate_tenant`) makes the Secret invalid, so a key hand-made for such a namespace
        authenticates nothing.
        """
        metadata = metadata_of(secret)
        name = str(metadata.get("name") or "")
        key_id = key_id_of_secret_name(name)
        if key_id is None:
            raise InvalidKeySecret(f"the name {name!r} is not {SECRET_NAME_PREFIX}<{KEY_ID_LENGTH} hex digits>")
        data = secret.get("data") or {}
        sha256 = _decode(data, SHA256_FIELD)
        if _SHA256.fullmatch(sha256) is None:
            raise InvalidKeySecret(f"data.{SHA256_FIELD} is not 64 lowercase hex digits")
        tenant = _decode(data, TENANT_FIELD)
        concurrency = _decode(data, CONCURRENCY_FIELD)
        if _CONCURRENCY.fullmatch(concurrency) is None:
            raise InvalidKeySecret(f"data.{CONCURRENCY_FIELD} {concurrency!r} is not a whole number of at least 1")
        try:
            validate_tenant(tenant, str(metadata.get("namespace") or DEFAULT_KEY_NAMESPACE))
        except InvalidTenant as error:
            raise InvalidKeySecret(f"data.{TENANT_FIELD}: {error}") from error
        return cls(
            key_id=key_id, tenant=tenant, concurrency=int(concurrency), sha256=sha256, created=_created(metadata)
        )


def verify(record: ApiKeyRecord, key: str) -> bool:
    """Whether ``key`` is the key of ``record`` (constant-time comparison of the hashes)."""
    if key_id_of(key) != record.key_id:
        return False
    return hash_matches(record, key)


def hash_matches(record: ApiKeyRecord, key: str) -> bool:
    """Whether the SHA-256 of ``key`` is ``record``'s, in constant time; for a ``key`` whose id is known to be
    ``record``'s (:func:`verify` checks that too)."""
    return hmac.compare_digest(hash_key(key).encode("ascii"), record.sha256.encode("ascii"))


def bootstrap_record(key: str, tenant: str, concurrency: int, key_namespace: str) -> ApiKeyRecord:
    """The record of a key given at start (the Helm chart's bootstrap key); raise :class:`ValueError` saying what
    is wrong (never showing the key)."""
    key_id = key_id_of(key.strip())
    if key_id is None:
        raise ValueError("the bootstrap key is not of the form mc_<12 hex digits>_<32 to 128 URL-safe characters>")
    validate_tenant(tenant, key_namespace)
    return ApiKeyRecord(
        key_id=key_id, tenant=tenant, concurrency=validate_concurrency(concurrency), sha256=hash_key(key.strip())
    )
