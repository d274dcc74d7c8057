"""The gateway's table of API keys, kept in memory from a list and watch of the key Secrets.

Authenticating a request is a dictionary lookup by the key's public id and one
constant-time comparison of hashes: no API call per request. The table follows
the Secrets with labels ``modelcluster.dev/api-key=true`` in one namespace with the
gateway's shared informer (:func:`~modelcluster.kube.informer.run_informer`): it
resumes a broken watch from the last resource version seen, lists again when the
apiserver answers 410 Gone (that version is too old), and backs off (bounded)
after other errors. A revoked key stops working once its DELETED event arrives,
normally within a second.

Staleness: while the watch fails, a revoked key would keep working. The table
counts as fresh when the apiserver last confirmed it (a list, an accepted watch
request, an event or a bookmark: the informer's ``progress``) at most
``max_staleness_s`` ago; past that :attr:`KeyStore.stale` is true and the gateway
answers API requests and ``/ready`` with 503 until a confirmation comes. A healthy
but idle watch must not go stale: bookmarks come about once a minute, too close to
the default limit of 60 s, so each watch request asks the apiserver to end it after
at most half the limit (:func:`watch_seconds_for`), and the next accepted watch
request confirms the table again. A watch that hangs without an error (a silent
network) confirms nothing, so it does go stale.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from modelcluster.gateway.keys import (
    KEY_SELECTOR,
    ApiKeyRecord,
    InvalidKeySecret,
    hash_matches,
    key_id_of,
    key_id_of_secret_name,
    parse_authorization,
)
from modelcluster.kube.client import Kube
from modelcluster.kube.informer import DEFAULT_BACKOFF, Backoff, list_objects, run_informer
from modelcluster.kube.objects import metadata_of

logger = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
WATCH_SECONDS = 300
MAX_STALENESS_S = 60.0


def watch_seconds_for(max_staleness_s: float) -> int:
    """The watch timeout that keeps an idle, healthy watch fresh: half the staleness limit (1..WATCH_SECONDS)."""
    return max(1, min(WATCH_SECONDS, int(max_staleness_s / 2)))


def apply_event(records: dict[str, ApiKeyRecord], event_type: str, secret: Mapping[str, Any]) -> str | None:
    """Apply one event of a key Secret to ``records`` (key id -> record), in place; no I/O.

    ``ADDED`` and ``MODIFIED`` store the parsed record, ``DELETED`` forgets it, any
    other type (``BOOKMARK``) changes nothing. Returns the id of the key it changed.
    A Secret that is not a valid key record is forgotten too (a key whose Secret was
    damaged stops working) and :class:`InvalidKeySecret` is raised for the caller to
    report.
    """
    key_id = key_id_of_secret_name(str(metadata_of(secret).get("name") or ""))
    if event_type == DELETED:
        return key_id if key_id is not None and records.pop(key_id, None) is not None else None
    if event_type not in (ADDED, MODIFIED):
        return None
    try:
        record = ApiKeyRecord.from_secret(secret)
    except InvalidKeySecret:
        if key_id is not None:
            records.pop(key_id, None)
        raise
    records[record.key_id] = record
    return record.key_id


def _secret_name(secret: Mapping[str, Any]) -> str:
    return str(metadata_of(secret).get("name") or "?")


class KeyStore:
    """API keys by id, following the key Secrets of ``namespace`` (a :class:`~modelcluster.kube.informer.Sink`)."""

    def __init__(
        self,
        namespace: str,
        *,
        max_staleness_s: float = MAX_STALENESS_S,
        watch_timeout: int | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace = namespace
        self.max_staleness_s = max_staleness_s
        self.watch_timeout = watch_seconds_for(max_staleness_s) if watch_timeout is None else watch_timeout
        self.backoff = backoff
        self.clock = clock
        self._confirmed: float | None = None  # clock() of the apiserver's last confirmation of the table
        self._ready = False
        self._records: dict[str, ApiKeyRecord] = {}
        #: Keys given at start (the bootstrap key), not from Secrets: a watch never removes them.
        self._static: dict[str, ApiKeyRecord] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether the keys were listed and are being followed."""
        return self._ready

    def confirm(self) -> None:
        """The apiserver confirmed the table as current (a list, an accepted watch, an event or a bookmark)."""
        self._confirmed = self.clock()

    def age(self) -> float | None:
        """Seconds since the table was last confirmed current; None before the first list."""
        return None if self._confirmed is None else max(0.0, self.clock() - self._confirmed)

    @property
    def stale(self) -> bool:
        """Whether the table went unconfirmed for longer than ``max_staleness_s`` (revoked keys might still work)."""
        age = self.age()
        return age is not None and age > self.max_staleness_s

    def stale_message(self) -> str:
        return f"API keys are stale: the key store has not been refreshed for {int(self.age() or 0)} s"

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of a key id, if such a key exists."""
        return self._records.get(key_id) or self._static.get(key_id)

    def add_static(self, record: ApiKeyRecord) -> None:
        """Accept a key given at start (the bootstrap key) besides those of the Secrets."""
        self._static[record.key_id] = record

    def authenticate(self, header: str | None) -> ApiKeyRecord | None:
        """The record of the key in an ``Authorization`` header, or ``None`` for a missing, unknown or wrong key."""
        key = parse_authorization(header)
        if key is None:
            return None
        key_id = key_id_of(key)
        if key_id is None:
            return None
        record = self.get(key_id)
        # The record was found by the key's own id: only the hash is left to compare.
        if record is None or record.key_id != key_id or not hash_matches(record, key):
            return None
        return record

    def reset(self, items: list[dict[str, Any]]) -> None:
        """Replace the table by the listed key Secrets."""
        records: dict[str, ApiKeyRecord] = {}
        for secret in items:
            self._apply(records, ADDED, secret, announce=False)
        self._records = records
        logger.info("listed %d API keys in %s", len(records), self.namespace)

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        """Apply one watch event of a key Secret."""
        self._apply(self._records, kind, obj, announce=True)

    async def start(self, api_client: client.ApiClient) -> None:
        """List the keys, then follow them in a background task; raises :class:`KubeError` if the list fails."""
        if self._task is not None:
            raise RuntimeError("the key store is already started")
        kube = Kube(api_client)
        call = functools.partial(kube.core.list_namespaced_secret, self.namespace)
        items, version = await list_objects(kube, call, label_selector=KEY_SELECTOR)
        self.reset(items)
        self.confirm()
        self._task = asyncio.create_task(
            run_informer(
                kube,
                call,
                self,
                asyncio.Event(),
                f"the API keys in {self.namespace}",
                version=version,
                watch_seconds=self.watch_timeout,
                backoff=self.backoff,
                progress=self.confirm,
                label_selector=KEY_SELECTOR,
            ),
            name=f"api-keys-{self.namespace}",
        )
        self._task.add_done_callback(self._followed)
        self._ready = True

    async def stop(self) -> None:
        """Stop following the keys (the table keeps its last contents)."""
        self._ready = False
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # an unexpected end was logged by _followed already

    def _followed(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        self._ready = False
        logger.error("stopped following the API keys in %s", self.namespace, exc_info=task.exception())

    def _apply(
        self, records: dict[str, ApiKeyRecord], event_type: str, secret: Mapping[str, Any], *, announce: bool
    ) -> None:
        try:
            key_id = apply_event(records, event_type, secret)
        except InvalidKeySecret as error:
            logger.warning("ignoring Secret %s/%s: %s", self.namespace, _secret_name(secret), error)
            return
        if announce and key_id is not None:
            logger.info("API key %s %s", key_id, event_type.lower())
