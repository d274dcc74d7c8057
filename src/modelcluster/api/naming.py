"""Names and label values derived from model ids.

Model ids such as ``Qwen/Qwen2-7B-Instruct`` hold ``/``, capitals, ``_`` and ``.``.
Kubernetes names and label values hold none of ``/``, and a Service name must be
a DNS-1035 label. Two rules keep ids apart:

* **object name** — a readable DNS-1035 slug of the id plus ``-`` and the first
  16 hex digits (64 bits) of the SHA-256 of the *exact* id, at most 63 characters.
  Ids that differ only in case or punctuation share a slug but not a hash; a second
  id with the name of a given one takes about 2**64 hashes. A name still never
  proves the model: whoever finds a cluster by id checks that its ``spec.model`` is
  exactly that id. Clusters made before carry the **legacy name**
  (:func:`legacy_object_name`: the slug cut at 54, and 8 hex digits, which collide
  in about 77,000 tries); :func:`object_names` lists both, the new one first.
* **label value** (``modelcluster.dev/model``) — the id with ``/`` written as
  ``..``. Admitted ids never contain ``..`` and each part begins and ends with a
  letter or digit, so distinct ids get distinct values. Ids whose encoding is
  longer than 63 characters are truncated and suffixed with the 8-digit hash (the
  label is informational, and changing it would restart existing clusters' pods).
  The exact id is always in ``spec.model`` and in the annotation
  ``modelcluster.dev/model-id`` of the children.
"""

from __future__ import annotations

import functools
import hashlib
import re

MAX_NAME_LENGTH = 63
HASH_LENGTH = 16
#: The hash length of names given before 64-bit hashes, and of long label values.
LEGACY_HASH_LENGTH = 8
_SLUG_MAX = MAX_NAME_LENGTH - HASH_LENGTH - 1
_LEGACY_SLUG_MAX = MAX_NAME_LENGTH - LEGACY_HASH_LENGTH - 1

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_SEPARATOR = ".."


def model_hash(model_id: str, length: int = HASH_LENGTH) -> str:
    """The first ``length`` (16) hex digits of the SHA-256 of the exact id."""
    return hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:length]


def slug(model_id: str, limit: int = _SLUG_MAX) -> str:
    """Lowercase, runs of anything else than ``[a-z0-9]`` -> ``-``, starting with a letter, at most ``limit`` (46)."""
    text = _NOT_ALNUM.sub("-", model_id.lower()).strip("-")
    if not text or not text[0].isalpha():
        text = f"m-{text}".rstrip("-")
    return text[:limit].rstrip("-")


def object_name(model_id: str) -> str:
    """The name of a new ModelCluster (and of its Deployment and Service) for ``model_id``."""
    return f"{slug(model_id)}-{model_hash(model_id)}"


def legacy_object_name(model_id: str) -> str:
    """The name clusters were given before 64-bit hashes: a 54-character slug and 8 hex digits."""
    return f"{slug(model_id, _LEGACY_SLUG_MAX)}-{model_hash(model_id, LEGACY_HASH_LENGTH)}"


@functools.lru_cache(maxsize=4096)
def object_names(model_id: str) -> tuple[str, str]:
    """Where a cluster of ``model_id`` may be found, preferred first: its name, then its legacy name.

    A cluster under the legacy name is the model's only if its ``spec.model`` is exactly ``model_id``.
    """
    return object_name(model_id), legacy_object_name(model_id)


def is_dns1035_label(name: str) -> bool:
    """Whether ``name`` can name a Service: lowercase alphanumerics and ``-``, starts with a letter, <= 63."""
    return len(name) <= MAX_NAME_LENGTH and _DNS1035.match(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and _LABEL_VALUE.match(value) is not None


def model_label_value(model_id: str) -> str:
    """The label-safe form of ``model_id`` for ``modelcluster.dev/model``."""
    encoded = model_id.replace("/", _LABEL_SEPARATOR)
    if is_label_value(encoded):
        return encoded
    digest = model_hash(model_id, LEGACY_HASH_LENGTH)
    head = re.sub(r"[^A-Za-z0-9._-]", "-", encoded)[:_LEGACY_SLUG_MAX]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{digest}" if head else digest
