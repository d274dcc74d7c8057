"""API keys without a cluster: headers, hashing, the key Secret, the key table's events, the limiter."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_asyncio import client as async_client

from modelcluster.gateway.keys import (
    ApiKeyRecord,
    InvalidKeySecret,
    InvalidTenant,
    build_key_secret,
    generate_key,
    hash_key,
    key_id_of,
    parse_authorization,
    validate_tenant,
    verify,
)
from modelcluster.gateway.keys_cli import format_table
from modelcluster.gateway.keystore import KeyStore, apply_event
from modelcluster.gateway.limits import ConcurrencyLimiter
from modelcluster.kube.client import KubeError
from modelcluster.kube.informer import Backoff

from support import eventually_async

KEY = "mc_0123456789ab_" + "A" * 20 + "-_" + "z" * 21
OTHER_KEY = "mc_0123456789ab_" + "B" * 43


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}


def with_data(secret: dict[str, Any], **changes: str) -> dict[str, Any]:
    data = dict(secret["data"])
    data.update({name: base64.b64encode(value.encode()).decode() for name, value in changes.items()})
    return {**secret, "data": data}


# --- the Authorization header -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Key {KEY}", KEY),
        (f"key {KEY}", KEY),
        (f"KEY {KEY}", KEY),
        (f"Bearer {KEY}", KEY),
        (KEY, KEY),
        (f"  Key   {KEY}  ", KEY),
        (f"\t{KEY}\n", KEY),
        ("Key some-other-token", "some-other-token"),
    ],
)
def test_parse_authorization_finds_the_credential(header: str, expected: str) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "Key",
        "key",
        "Bearer",
        f"Key {KEY} extra",
        f"Basic {KEY}",
        f"Key: {KEY}",
        "Key \x00abc",
        "Key ключ",
        "Key " + "a" * 257,
        "a" * 257,
    ],
)
def test_parse_authorization_refuses_anything_else(header: str | None) -> None:
    assert parse_authorization(header) is None


@given(st.text(max_size=300))
def test_parse_authorization_returns_one_printable_ascii_word_or_none(header: str) -> None:
    credential = parse_authorization(header)
    assert credential is None or re.fullmatch(r"[!-~]{1,256}", credential)


# --- the key and its hash -----------------------------------------------------------------


def test_generated_keys_have_the_documented_form_and_differ() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert re.fullmatch(r"mc_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key)
        assert key_id_of(key) == key[3:15]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "mc_0123456789ab_",
        "mc_0123456789ab_short",
        "mc_0123456789AB_" + "A" * 43,  # upper-case id
        "mc_0123456789a_" + "A" * 43,  # id too short
        "xx_0123456789ab_" + "A" * 43,
        "mc_0123456789ab_" + "A" * 42 + "!",
        "mc_0123456789ab_" + "A" * 129,
        " mc_0123456789ab_" + "A" * 43,
    ],
)
def test_key_id_of_refuses_malformed_keys(key: str) -> None:
    assert key_id_of(key) is None


def test_hash_is_the_sha256_of_the_whole_key() -> None:
    assert hash_key(KEY) == hashlib.sha256(KEY.encode()).hexdigest()
    assert hash_key(KEY) != hash_key(OTHER_KEY)


def test_verify_accepts_only_the_key_itself() -> None:
    record = ApiKeyRecord(key_id="0123456789ab", tenant="acme", concurrency=2, sha256=hash_key(KEY))
    assert verify(record, KEY)
    assert not verify(record, OTHER_KEY)  # same id, another secret
    assert not verify(record, KEY.replace("0123456789ab", "0123456789ac"))
    assert not verify(record, "not a key")


def test_a_record_never_shows_its_hash() -> None:
    record = ApiKeyRecord(key_id="0123456789ab", tenant="acme", concurrency=2, sha256=hash_key(KEY))
    assert hash_key(KEY) not in repr(record)
    assert "0123456789ab" in repr(record)


# --- tenants ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "acme", "team-1", "0team", "a" * 63])
def test_valid_tenant_names(name: str) -> None:
    assert validate_tenant(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Acme", "team_1", "-team", "team-", "a.b", "a" * 64, "acme\n", "kube-system", "kube-public", "tëam"],
)
def test_invalid_tenant_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(InvalidTenant, match="invalid tenant name"):
        validate_tenant(name)


# --- the key Secret -----------------------------------------------------------------------


def test_key_secret_holds_the_hash_tenant_and_limit_but_not_the_key() -> None:
    secret = build_key_secret(KEY, "acme", 4, "modelcluster-system")
    assert secret["metadata"] == {
        "name": "modelcluster-key-0123456789ab",
        "namespace": "modelcluster-system",
        "labels": {
            "app.kubernetes.io/part-of": "modelcluster",
            "modelcluster.dev/api-key": "true",
            "modelcluster.dev/tenant": "acme",
        },
    }
    assert decoded(secret) == {"sha256": hash_key(KEY), "tenant": "acme", "concurrency": "4"}
    secret_part = KEY.split("_", 2)[2]
    assert secret_part not in str(secret)
    assert all(secret_part not in value for value in decoded(secret).values())


def test_key_secret_round_trips_to_a_record() -> None:
    secret = build_key_secret(KEY, "acme", 4, "modelcluster-system")
    secret["metadata"]["creationTimestamp"] = "2025-03-04T05:06:07Z"
    record = ApiKeyRecord.from_secret(secret)
    assert record == ApiKeyRecord(
        key_id="0123456789ab",
        tenant="acme",
        concurrency=4,
        sha256=hash_key(KEY),
        created=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    )
    assert verify(record, KEY)


@pytest.mark.parametrize(
    ("key", "tenant", "concurrency"),
    [("not-a-key", "acme", 1), (KEY, "Acme", 1), (KEY, "acme", 0), (KEY, "acme", -3)],
)
def test_key_secret_refuses_bad_input(key: str, tenant: str, concurrency: int) -> None:
    with pytest.raises(ValueError):
        build_key_secret(key, tenant, concurrency, "modelcluster-system")


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: {**s, "metadata": {**s["metadata"], "name": "some-secret"}},
        lambda s: {**s, "metadata": {**s["metadata"], "name": "modelcluster-key-XYZ"}},
        lambda s: {**s, "data": {k: v for k, v in s["data"].items() if k != "sha256"}},
        lambda s: {**s, "data": {**s["data"], "sha256": "%%% not base64"}},
        lambda s: with_data(s, sha256="abc"),
        lambda s: with_data(s, tenant="Not_A_Namespace"),
        lambda s: with_data(s, concurrency="0"),
        lambda s: with_data(s, concurrency="-2"),
        lambda s: with_data(s, concurrency="lots"),
        lambda s: {**s, "data": None},
    ],
)
def test_damaged_key_secrets_are_refused(damage: Any) -> None:
    secret = damage(build_key_secret(KEY, "acme", 4, "modelcluster-system"))
    with pytest.raises(InvalidKeySecret):
        ApiKeyRecord.from_secret(secret)


# --- the key table's events ---------------------------------------------------------------


def test_apply_event_adds_modifies_and_deletes() -> None:
    records: dict[str, ApiKeyRecord] = {}
    secret = build_key_secret(KEY, "acme", 4, "ns")
    assert apply_event(records, "ADDED", secret) == "0123456789ab"
    assert records["0123456789ab"].concurrency == 4

    assert apply_event(records, "MODIFIED", with_data(secret, concurrency="9")) == "0123456789ab"
    assert records["0123456789ab"].concurrency == 9

    other = build_key_secret(generate_key(), "beta", 1, "ns")
    apply_event(records, "ADDED", other)
    assert len(records) == 2

    assert apply_event(records, "DELETED", secret) == "0123456789ab"
    assert list(records) == [other["metadata"]["name"].removeprefix("modelcluster-key-")]
    assert apply_event(records, "DELETED", secret) is None


def test_apply_event_ignores_bookmarks() -> None:
    records: dict[str, ApiKeyRecord] = {}
    bookmark = {"metadata": {"resourceVersion": "42"}}
    assert apply_event(records, "BOOKMARK", bookmark) is None
    assert records == {}


def test_a_damaged_secret_revokes_its_key_and_is_reported() -> None:
    records: dict[str, ApiKeyRecord] = {}
    secret = build_key_secret(KEY, "acme", 4, "ns")
    apply_event(records, "ADDED", secret)
    with pytest.raises(InvalidKeySecret):
        apply_event(records, "MODIFIED", with_data(secret, sha256="tampered"))
    assert records == {}


def test_the_key_table_shows_no_hash() -> None:
    record = ApiKeyRecord(
        key_id="0123456789ab",
        tenant="acme",
        concurrency=4,
        sha256=hash_key(KEY),
        created=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    )
    table = format_table([record])
    assert table.splitlines()[0].split() == ["KEY", "ID", "TENANT", "CONCURRENCY", "CREATED"]
    assert table.splitlines()[1].split() == ["0123456789ab", "acme", "4", "2025-03-04T05:06:07Z"]
    assert hash_key(KEY) not in table


# --- following the key Secrets (against a scripted apiserver) -----------------------------


def key_secret(key: str, resource_version: str) -> dict[str, Any]:
    secret = build_key_secret(key, "acme", 2, "keys")
    secret["metadata"]["resourceVersion"] = resource_version
    return secret


def event(event_type: str, secret: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": secret}).encode() + b"\n"


GONE = event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})
#: Pushed to a :class:`Stream`: the apiserver ends the watch normally (its timeout passed).
END = StopAsyncIteration()


class Answer:
    """A whole response read with ``_preload_content=False``: a list, or a failure's Status."""

    def __init__(self, body: dict[str, Any], status: int = 200) -> None:
        self.status = status
        self.reason = "scripted"
        self.payload = json.dumps(body).encode()

    async def read(self) -> bytes:
        return self.payload

    def release(self) -> None:
        pass


class Stream:
    """A watch response: lines and errors pushed by the test, read in turn (it waits when there are none)."""

    def __init__(self, *items: bytes | BaseException, status: int = 200) -> None:
        self.status = status
        self.content = self
        self.items: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self.released = False
        for item in items:
            self.push(item)

    def push(self, item: bytes | BaseException) -> None:
        self.items.put_nowait(item)

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        item = await self.items.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def read(self) -> bytes:
        return b'{"kind": "Status", "message": "scripted failure"}'

    def release(self) -> None:
        self.released = True


#: A scripted list: its resource version and items, or the HTTP status of a failed list.
Listing = tuple[str, list[dict[str, Any]]] | int


class ScriptedSecrets:
    """``list_namespaced_secret``: the scripted lists (served ``page`` items at a time), then watch responses."""

    def __init__(self, lists: list[Listing], streams: list[Stream], page: int = 100) -> None:
        self.lists = lists
        self.streams = streams
        self.page = page
        self.listed = 0
        self.pages: list[dict[str, Any]] = []
        self.watches: list[dict[str, Any]] = []

    @property
    def watched_from(self) -> list[str]:
        return [options["resource_version"] for options in self.watches]

    async def list_namespaced_secret(self, namespace: str, **options: Any) -> Any:
        assert (namespace, options["label_selector"]) == ("keys", "modelcluster.dev/api-key=true")
        assert options["_preload_content"] is False
        if options.get("watch"):
            self.watches.append(options)
            return self.streams.pop(0) if self.streams else Stream()
        self.pages.append(options)
        if "_continue" not in options:
            self.listed += 1
        listing = self.lists[self.listed - 1]
        if isinstance(listing, int):
            return Answer({"kind": "Status", "code": listing, "message": "scripted failure"}, status=listing)
        version, items = listing
        start = int(options.get("_continue", 0))
        end = start + min(self.page, options["limit"])
        metadata = {"resourceVersion": version, **({"continue": str(end)} if end < len(items) else {})}
        return Answer({"metadata": metadata, "items": items[start:end]})


StartStore = Callable[..., Awaitable[KeyStore]]
FAST = Backoff(initial=0.01, maximum=0.04)


@pytest.fixture
async def start_store(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StartStore]:
    """Start a key store against scripted responses; stop it after the test."""
    stores: list[KeyStore] = []

    async with async_client.ApiClient(async_client.Configuration()) as api_client:

        async def start(api: ScriptedSecrets, **options: Any) -> KeyStore:
            monkeypatch.setattr(async_client, "CoreV1Api", lambda _: api)
            store = KeyStore("keys", **{"backoff": FAST, **options})
            stores.append(store)
            await store.start(api_client)
            return store

        yield start
        for store in stores:
            await store.stop()
            assert not store.ready


async def test_the_store_lists_again_after_410_gone(start_store: StartStore) -> None:
    first, second = generate_key(), generate_key()
    watch = Stream(event("ADDED", key_secret(second, "11")))
    # The first key is deleted while the watch is down, then the watch expires: only a new list sees it gone.
    api = ScriptedSecrets([("10", [key_secret(first, "5")]), ("20", [key_secret(second, "11")])], [watch])
    store = await start_store(api)
    assert store.ready
    assert store.authenticate(f"Key {first}") is not None  # served from the initial list at once
    await eventually_async(lambda: store.authenticate(f"Key {second}") is not None)
    assert api.listed == 1

    watch.push(GONE)
    await eventually_async(lambda: store.authenticate(f"Key {first}") is None)
    assert store.authenticate(f"Key {second}") is not None
    assert api.listed == 2
    await eventually_async(lambda: api.watched_from == ["10", "20"])
    assert watch.released
    assert store.ready


async def test_a_410_answer_to_the_watch_request_lists_again(start_store: StartStore) -> None:
    key = generate_key()
    api = ScriptedSecrets([("10", []), ("20", [key_secret(key, "15")])], [Stream(status=410)])
    store = await start_store(api)
    await eventually_async(lambda: store.authenticate(key) is not None)
    assert api.listed == 2
    await eventually_async(lambda: api.watched_from == ["10", "20"])


async def test_the_store_resumes_after_an_error_without_listing(start_store: StartStore) -> None:
    first, second = generate_key(), generate_key()
    broken = Stream(event("ADDED", key_secret(first, "12")), aiohttp.ClientConnectionError("reset"))
    api = ScriptedSecrets([("10", [])], [broken, Stream(event("ADDED", key_secret(second, "13")))])
    store = await start_store(api)
    await eventually_async(lambda: store.authenticate(f"Key {second}") is not None)
    assert store.authenticate(f"Key {first}") is not None
    assert api.listed == 1
    assert api.watched_from == ["10", "12"]
    assert broken.released


async def test_a_watch_the_server_ends_resumes_from_the_last_version(start_store: StartStore) -> None:
    key = generate_key()
    bookmark = event("BOOKMARK", {"kind": "Secret", "metadata": {"resourceVersion": "17"}})
    api = ScriptedSecrets([("10", [])], [Stream(bookmark, END), Stream(event("ADDED", key_secret(key, "18")))])
    store = await start_store(api)
    await eventually_async(lambda: store.authenticate(key) is not None)
    assert api.watched_from == ["10", "17"]
    assert api.listed == 1


async def test_the_store_forgets_deleted_keys(start_store: StartStore) -> None:
    key = generate_key()
    watch = Stream()
    store = await start_store(ScriptedSecrets([("10", [key_secret(key, "5")])], [watch]))
    assert store.authenticate(key) is not None
    watch.push(event("DELETED", key_secret(key, "14")))
    await eventually_async(lambda: store.authenticate(key) is None)
    assert len(store) == 0


async def test_the_store_lists_every_page(start_store: StartStore) -> None:
    keys = [generate_key() for _ in range(5)]
    api = ScriptedSecrets([("10", [key_secret(key, str(n)) for n, key in enumerate(keys)])], [], page=2)
    store = await start_store(api)
    assert len(store) == 5
    assert all(store.authenticate(key) is not None for key in keys)
    assert [page.get("_continue") for page in api.pages] == [None, "2", "4"]
    assert all(page["limit"] >= 2 for page in api.pages)
    await eventually_async(lambda: api.watched_from == ["10"])


async def test_the_watch_asks_for_the_configured_timeout(start_store: StartStore) -> None:
    api = ScriptedSecrets([("10", [])], [])
    await start_store(api, watch_timeout=7)
    await eventually_async(lambda: len(api.watches) == 1)
    options = api.watches[0]
    assert (options["timeout_seconds"], options["allow_watch_bookmarks"]) == (7, True)
    assert options["_request_timeout"] > 7


async def test_a_failed_first_list_fails_the_start(start_store: StartStore) -> None:
    with pytest.raises(KubeError) as failed:
        await start_store(ScriptedSecrets([503], []))
    assert failed.value.status == 503


async def test_damaged_secrets_are_logged_and_forgotten(
    start_store: StartStore, caplog: pytest.LogCaptureFixture
) -> None:
    good, damaged = generate_key(), generate_key()
    broken = with_data(key_secret(damaged, "6"), sha256="not-a-hash")
    watch = Stream()
    store = await start_store(ScriptedSecrets([("10", [key_secret(good, "5"), broken])], [watch]))
    assert store.authenticate(good) is not None
    assert store.authenticate(damaged) is None
    assert len(store) == 1
    assert f"ignoring Secret keys/{broken['metadata']['name']}" in caplog.text

    watch.push(event("MODIFIED", with_data(key_secret(good, "12"), concurrency="lots")))
    await eventually_async(lambda: store.authenticate(good) is None)
    assert len(store) == 0
    assert store.ready


async def test_failures_back_off_and_a_working_watch_starts_over(
    start_store: StartStore, caplog: pytest.LogCaptureFixture
) -> None:
    key = generate_key()
    failing = [Stream(status=500) for _ in range(4)]
    # Four failed watch requests, then one that delivers an event and breaks, then one that works.
    broken = Stream(event("ADDED", key_secret(key, "12")), aiohttp.ClientPayloadError("cut"))
    api = ScriptedSecrets([("10", [])], [*failing, broken, Stream()])
    store = await start_store(api)
    await eventually_async(lambda: len(api.watches) == 6)
    assert store.authenticate(key) is not None
    assert api.watched_from == ["10"] * 5 + ["12"]
    delays = [record.args[-1] for record in caplog.records if "retrying in" in record.getMessage()]
    assert delays == [0.01, 0.02, 0.04, 0.04, 0.01]
    assert api.listed == 1


def test_backoff_doubles_up_to_its_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0)
    delays = [backoff.initial]
    for _ in range(4):
        delays.append(backoff.after(delays[-1]))
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


# --- the concurrency limiter --------------------------------------------------------------


def test_limiter_admits_up_to_the_limit_then_refuses() -> None:
    limiter = ConcurrencyLimiter()
    assert [limiter.try_acquire("k", 3) for _ in range(4)] == [True, True, True, False]
    assert limiter.in_flight("k") == 3
    limiter.release("k")
    assert limiter.try_acquire("k", 3)
    assert not limiter.try_acquire("k", 3)


def test_limiter_counts_keys_apart() -> None:
    limiter = ConcurrencyLimiter()
    assert limiter.try_acquire("a", 1)
    assert not limiter.try_acquire("a", 1)
    assert limiter.try_acquire("b", 1)


def test_limiter_never_goes_negative_and_forgets_idle_keys() -> None:
    limiter = ConcurrencyLimiter()
    limiter.release("never-acquired")
    assert limiter.in_flight("never-acquired") == 0
    assert len(limiter) == 0
    for _ in range(2):
        assert limiter.try_acquire("k", 5)
    for _ in range(3):
        limiter.release("k")
    assert limiter.in_flight("k") == 0
    assert len(limiter) == 0
    assert [limiter.try_acquire("k", 2) for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("limit", "replicas", "share"),
    [(10, 1, 10), (10, 3, 4), (10, 10, 1), (1, 3, 1), (7, 2, 4), (5, 0, 5), (5, -1, 5)],
)
def test_each_replica_enforces_the_ceiling_of_its_share(limit: int, replicas: int, share: int) -> None:
    limiter = ConcurrencyLimiter()
    limiter.replicas = replicas
    assert limiter.share(limit) == share
    admitted = 0
    while limiter.try_acquire("k", limit):
        admitted += 1
    assert admitted == share


def test_changing_replicas_applies_to_new_requests_only() -> None:
    limiter = ConcurrencyLimiter(replicas=1)
    assert all(limiter.try_acquire("k", 4) for _ in range(4))
    limiter.replicas = 2
    assert not limiter.try_acquire("k", 4)
    limiter.release("k")
    limiter.release("k")
    assert not limiter.try_acquire("k", 4)
    limiter.release("k")
    assert limiter.try_acquire("k", 4)


class ManualClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


async def test_the_list_an_accepted_watch_and_bookmarks_keep_the_keys_fresh(start_store: StartStore) -> None:
    clock = ManualClock()
    watch = Stream()
    api = ScriptedSecrets([("10", [])], [watch])
    store = await start_store(api, max_staleness_s=60.0, clock=clock)
    assert not store.stale  # the first list confirmed it
    await eventually_async(lambda: len(api.watches) == 1)
    assert api.watches[0]["timeout_seconds"] == 30  # renewed within half the limit even when nothing happens
    clock.now += 61
    assert store.stale
    watch.push(event("BOOKMARK", {"kind": "Secret", "metadata": {"resourceVersion": "17"}}))
    await eventually_async(lambda: not store.stale)
    clock.now += 61
    assert store.stale
    watch.push(END)  # the apiserver ends the watch at its timeout; the next watch request is accepted
    await eventually_async(lambda: len(api.watches) == 2)
    await eventually_async(lambda: not store.stale)
    assert api.listed == 1


async def test_a_failing_watch_leaves_the_keys_stale(start_store: StartStore) -> None:
    clock = ManualClock()
    api = ScriptedSecrets([("10", [])], [Stream(status=500) for _ in range(50)])
    store = await start_store(api, max_staleness_s=60.0, clock=clock)
    clock.now += 61
    await eventually_async(lambda: len(api.watches) >= 3)
    assert store.stale
    assert store.ready  # still following: it recovers on the first accepted watch
