"""The gateway's table of API keys, kept in memory from a list and watch of the key Secrets.

Authenticating a request is a dictionary lookup by the key's public id and one
constant-time comparison of hashes: no API call per request. The table follows
the Secrets with labels ``modelcluster.dev/api-key=true`` in one namespace: it
resumes a broken watch from the last resource version seen, lists again when the
apiserver answers 410 Gone (that version is too old), and backs off (bounded)
after other errors. A revoked key stops working once its DELETED event arrives,
normally within a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.rest import ApiException

from modelcluster.gateway.keys import (
    KEY_SELECTOR,
    ApiKeyRecord,
    InvalidKeySecret,
    key_id_of,
    key_id_of_secret_name,
    parse_authorization,
    verify,
)
from modelcluster.operator.kube import Kube, KubeError

logger = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
LIST_PAGE_SIZE = 500
GONE = 410


def apply_event(records: dict[str, ApiKeyRecord], event_type: str, secret: Mapping[str, Any]) -> str | None:
    """Apply one event of a key Secret to ``records`` (key id -> record), in place; no I/O.

    ``ADDED`` and ``MODIFIED`` store the parsed record, ``DELETED`` forgets it, any
    other type (``BOOKMARK``) changes nothing. Returns the id of the key it changed.
    A Secret that is not a valid key record is forgotten too (a key whose Secret was
    damaged stops working) and :class:`InvalidKeySecret` is raised for the caller to
    report.
    """
    key_id = key_id_of_secret_name(str((secret.get("metadata") or {}).get("name") or ""))
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


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after consecutive failures: doubling from ``initial`` up to ``maximum``."""

    initial: float = 0.5
    maximum: float = 30.0

    def after(self, delay: float) -> float:
        return min(self.maximum, delay * 2)


def _secret_name(secret: Mapping[str, Any]) -> str:
    return str((secret.get("metadata") or {}).get("name") or "?")


class KeyStore:
    """API keys by id, following the key Secrets of ``namespace``."""

    def __init__(self, namespace: str, *, watch_timeout: int = 300, backoff: Backoff | None = None) -> None:
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self.backoff = backoff or Backoff()
        self._ready = False
        self._records: dict[str, ApiKeyRecord] = {}
        self._api_client: client.ApiClient | None = None
        self._kube: Kube | None = None
        self._core: client.CoreV1Api | None = None
        self._task: asyncio.Task[None] | None = None
        #: The resource version the table reflects; ``None`` when it must be listed again.
        self._version: str | None = None

    @property
    def ready(self) -> bool:
        """Whether the keys were listed and are being followed."""
        return self._ready

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of a key id, if such a key exists."""
        return self._records.get(key_id)

    def authenticate(self, header: str | None) -> ApiKeyRecord | None:
        """The record of the key in an ``Authorization`` header, or ``None`` for a missing, unknown or wrong key."""
        key = parse_authorization(header)
        if key is None:
            return None
        key_id = key_id_of(key)
        if key_id is None:
            return None
        record = self._records.get(key_id)
        if record is None or not verify(record, key):
            return None
        return record

    async def start(self, api_client: client.ApiClient) -> None:
        """List the keys, then follow them in a background task; raises :class:`KubeError` if the list fails."""
        if self._task is not None:
            raise RuntimeError("the key store is already started")
        self._api_client = api_client
        self._kube = Kube(api_client)
        self._core = client.CoreV1Api(api_client)
        await self._list()
        self._task = asyncio.create_task(self._follow(), name=f"api-keys-{self.namespace}")
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

    async def _list(self) -> None:
        """Replace the table by the listed key Secrets."""
        assert self._api_client is not None and self._kube is not None and self._core is not None
        records: dict[str, ApiKeyRecord] = {}
        continue_token = ""
        while True:
            page = await self._kube.call(
                self._core.list_namespaced_secret(
                    self.namespace,
                    label_selector=KEY_SELECTOR,
                    limit=LIST_PAGE_SIZE,
                    _continue=continue_token,  # "" (the first page) is the same as none
                )
            )
            plain = self._api_client.sanitize_for_serialization(page)
            for secret in plain.get("items") or []:
                self._apply(records, ADDED, secret, announce=False)
            metadata = plain.get("metadata") or {}
            continue_token = str(metadata.get("continue") or "")
            if not continue_token:
                break
        self._records = records
        self._version = str(metadata.get("resourceVersion") or "")
        logger.info("listed %d API keys in %s", len(records), self.namespace)

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

    async def _watch(self) -> None:
        """Apply the events after the table's resource version until the server ends the watch."""
        assert self._core is not None and self._version is not None
        watcher = watch.Watch(return_type="object")
        try:
            async with watcher:
                events = watcher.stream(
                    self._core.list_namespaced_secret,
                    self.namespace,
                    label_selector=KEY_SELECTOR,
                    resource_version=self._version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_timeout,
                    _request_timeout=(30, self.watch_timeout + 30),
                )
                async for event in events:
                    self._apply(self._records, str(event["type"]), event["raw_object"], announce=True)
                    self._version = str(watcher.resource_version or self._version)
        except ApiException as error:
            raise KubeError(int(error.status or 0), str(error.reason)) from error
        except (TimeoutError, aiohttp.ClientError) as error:
            raise KubeError(0, f"{type(error).__name__}: {error}") from error

    async def _follow(self) -> None:
        """Watch forever: resume from the last version seen after errors, list again after 410 Gone."""
        delay = self.backoff.initial
        while True:
            attempt_from = self._version
            try:
                if self._version is None:
                    await self._list()
                await self._watch()
                delay = self.backoff.initial
                continue
            except KubeError as error:
                if error.status == GONE and self._version is not None:
                    logger.info("the API key watch in %s expired (%s); listing again", self.namespace, error)
                    self._version = None
                    continue
                if self._version != attempt_from:
                    delay = self.backoff.initial  # the connection worked for a while: a fresh failure
                logger.warning(
                    "following the API keys in %s failed (%s); retrying in %.1fs", self.namespace, error, delay
                )
            await asyncio.sleep(delay)
            delay = self.backoff.after(delay)
