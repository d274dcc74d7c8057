"""Metering through the gateway's application, on an SQLite file and on a real PostgreSQL server.

The gateway runs in this process over a real HTTP pod stand-in (:mod:`harness`); answers, headers, rows and
spend are read back from the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from harness import CHAT_MODEL, MODEL, POD_SECONDS, Replica, new_keys, post, start_pod, start_replica
from sqlalchemy import func, select

from modelcluster.api.metering import METER_HEADERS
from modelcluster.catalog import Catalog, load_catalog
from modelcluster.catalog.pricing import meter_of
from modelcluster.gateway.metering.budgets import Budget
from modelcluster.gateway.metering.ledger import create_engine
from modelcluster.gateway.metering.schema import usage

from support import eventually_async
from support.postgres import PostgresServer

EMBED = {"text": "a cat sits on the mat"}
CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


async def rows(url: str, *where: Any) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(usage).where(*where))).all())
    finally:
        await engine.dispose()


async def count(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(usage))).scalar_one())
    finally:
        await engine.dispose()


def assert_priced(headers: Mapping[str, str], meter: str, price: float) -> None:
    assert all(name in headers for name in METER_HEADERS), headers
    assert headers["X-Inference-Meter"] == meter
    assert float(headers["X-Inference-Meter-Price"]) == price
    seconds = float(headers["X-Inference-Time"])
    assert float(headers["X-Inference-Cost"]) == price * seconds


async def test_every_answer_is_priced_and_every_request_has_one_row(catalog: Catalog, ledger_url: str) -> None:
    pod = await start_pod()
    keys = new_keys("acme")
    replica = await start_replica(catalog, pod, ledger_url, keys, batch_size=50)
    embed_meter = meter_of(catalog, MODEL, "sentence-similarity")
    chat_meter = meter_of(catalog, CHAT_MODEL, "chat")
    try:
        async with aiohttp.ClientSession() as session:
            status, headers, _ = await post(session, replica.url + MODEL, replica.headers("acme"), EMBED)
            assert status == 200
            assert_priced(headers, embed_meter.name, embed_meter.price)
            assert float(headers["X-Inference-Time"]) == POD_SECONDS  # the pod's time, not the gateway's
            chat_url = replica.url + "openai/v1/chat/completions"
            status, headers, _ = await post(session, chat_url, replica.headers("acme"), CHAT)
            assert status == 200
            assert_priced(headers, chat_meter.name, chat_meter.price)
            # A failed answer is priced too (no time, no cost) and has its row.
            status, headers, _ = await post(session, replica.url + MODEL, replica.headers("acme"), {"txt": 1})
            assert status == 422 and float(headers["X-Inference-Cost"]) == 0.0
            # A stream: the meter in its headers, the four figures in its usage chunk.
            stream = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
            async with session.post(chat_url, json=stream, headers=replica.headers("acme")) as response:
                assert response.headers["X-Inference-Meter"] == chat_meter.name
                text = await response.text()
            last = [line for line in text.splitlines() if line.startswith("data: {")][-1]
            import json

            figures = json.loads(last.removeprefix("data: "))["usage"]
            assert figures["meter"] == chat_meter.name and figures["inference_time"] == POD_SECONDS
            assert figures["inference_cost"] == figures["meter_price"] * figures["inference_time"]
            assert figures["prompt_tokens"] == 5 and figures["completion_tokens"] == 2
            answers = await asyncio.gather(
                *(post(session, replica.url + MODEL, replica.headers("acme"), EMBED) for _ in range(200))
            )
        assert Counter(status for status, _, _ in answers) == {200: 200}
        for _, headers, _ in answers:
            assert_priced(headers, embed_meter.name, embed_meter.price)
    finally:
        await replica.close()
        await pod.close()
    found = await rows(ledger_url)
    assert len(found) == 204 and len({row.request_id for row in found}) == 204
    assert Counter(row.status for row in found) == {200: 203, 422: 1}
    stream_row = next(row for row in found if row.task == "chat" and row.tokens_out == 2 and row.status == 200)
    assert stream_row.tenant == "acme" and stream_row.cluster.startswith("acme/") and stream_row.key_id
    ok = [row for row in found if row.model == MODEL and row.status == 200]
    assert all(row.cost == row.meter_price * row.inference_seconds for row in ok)
    assert all(row.inference_seconds == POD_SECONDS and row.meter == embed_meter.name for row in ok)


async def test_stopping_mid_load_leaves_no_answer_without_its_row(catalog: Catalog, ledger_url: str) -> None:
    """200 concurrent requests; the gateway stops (what SIGTERM runs) while they are in flight."""
    pod = await start_pod()
    keys = new_keys("acme")
    replica = await start_replica(catalog, pod, ledger_url, keys, batch_size=20, flush_interval_s=5.0)
    answered: list[str] = []

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            status, headers, _ = await post(session, replica.url + MODEL, replica.headers("acme"), EMBED)
        except aiohttp.ClientError:
            return
        if status == 200:
            answered.append(headers["X-Request-Id"])

    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(one(session)) for _ in range(200)]
        await eventually_async(lambda: len(answered) >= 20, within=30, what="answers before the stop")
        await replica.close()
        await asyncio.gather(*load)
    await pod.close()
    assert answered
    found = await rows(ledger_url)
    written = {row.request_id for row in found}
    assert len(written) == len(found) <= 200  # one row per request that reached the gateway
    assert set(answered) <= written  # no answered request without its row
    # Every other row is a request cut off by the stop, recorded as such.
    assert {row.status for row in found if row.request_id not in set(answered)} <= {499}


async def test_the_database_away_for_ten_seconds_loses_no_row(
    catalog: Catalog, postgres: PostgresServer, postgres_url: str
) -> None:
    url = postgres_url
    pod = await start_pod()
    replica = await start_replica(catalog, pod, url, new_keys("acme"), batch_size=20, write_timeout_s=2.0)
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def burst(n: int) -> None:
                for status, _, _ in await asyncio.gather(
                    *(post(session, replica.url + MODEL, replica.headers("acme"), EMBED) for _ in range(n))
                ):
                    statuses.append(status)

            await burst(50)
            await eventually_async(lambda: replica.metering.ledger.buffered == 0, within=30, what="the first rows")
            await asyncio.to_thread(postgres.stop)
            stopped = time.monotonic()
            try:
                while time.monotonic() - stopped < 10:
                    await burst(20)
                    await asyncio.sleep(0.25)
                assert replica.metering.ledger.buffered > 0  # held while the database is away
            finally:
                await asyncio.to_thread(postgres.start)
            await burst(30)
            await eventually_async(
                lambda: replica.metering.ledger.buffered == 0, within=60, what="the buffered rows to be written"
            )
        metrics = replica.metering.metrics
        assert metrics.ledger_dropped._value.get() == 0
        assert metrics.ledger_errors._value.get() > 0
    finally:
        await replica.close()
        await pod.close()
    assert set(statuses) == {200}
    assert await count(url) == len(statuses)


async def test_a_full_buffer_drops_rows_counts_them_and_still_answers(catalog: Catalog) -> None:
    from modelcluster.devcluster.controlplane import free_port

    away = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
    pod = await start_pod()
    replica = await start_replica(catalog, pod, away, new_keys("acme"), buffer_limit=10, write_timeout_s=1.0)
    try:
        async with aiohttp.ClientSession() as session:
            answers = await asyncio.gather(
                *(post(session, replica.url + MODEL, replica.headers("acme"), EMBED) for _ in range(25))
            )
        assert {status for status, _, _ in answers} == {200}
        assert replica.metering.metrics.ledger_dropped._value.get() == 15
    finally:
        await replica.close()
        await pod.close()


async def test_a_budget_reached_mid_load_answers_402_on_both_replicas(catalog: Catalog, postgres_url: str) -> None:
    pod = await start_pod()
    keys = new_keys("acme", "other")
    price = meter_of(catalog, MODEL, "sentence-similarity").price
    budget = Budget(amount=price * POD_SECONDS * 30, period="day")  # about 30 requests
    budgets = {"acme": budget}
    first = await start_replica(catalog, pod, postgres_url, keys, budgets, flush_interval_s=0.2)
    second = await start_replica(catalog, pod, postgres_url, keys, budgets, flush_interval_s=0.2)
    replicas = (first, second)
    try:
        async with aiohttp.ClientSession() as session:

            async def status_of(replica: Replica, tenant: str = "acme") -> tuple[int, bytes]:
                status, _, body = await post(session, replica.url + MODEL, replica.headers(tenant), EMBED)
                return status, body

            # Load on the first replica only, until it refuses.
            served = 0
            while (await status_of(first))[0] == 200:
                served += 1
                assert served < 200
            assert served >= 29
            started = time.monotonic()

            async def refused(replica: Replica) -> bool:
                return (await status_of(replica))[0] == 402

            for replica in replicas:
                deadline = time.monotonic() + 5
                while not await refused(replica):
                    assert time.monotonic() < deadline, "the budget did not reach the replica within 5 s"
                    await asyncio.sleep(0.1)
            assert time.monotonic() - started < 5
            status, body = await status_of(second)
            assert status == 402
            import json

            message = json.loads(body)["error"]
            assert json.loads(body)["output"] is None
            assert "budget of tenant acme" in message and "per day" in message and "resets at" in message
            chat = await post(session, second.url + "openai/v1/chat/completions", second.headers("acme"), CHAT)
            assert chat[0] == 402 and "budget" in json.loads(chat[2])["error"]["message"]
            # Another tenant, and usage reads, are unaffected.
            assert (await status_of(second, "other"))[0] == 200
            async with session.get(second.url + "usage", headers=second.headers("acme")) as read:
                assert read.status == 200
    finally:
        for replica in replicas:
            await replica.close()
        await pod.close()
    refused_rows = await rows(postgres_url, usage.c.status == 402)
    assert refused_rows and all(row.cost == 0 for row in refused_rows)


async def test_a_tenant_reads_only_its_own_usage(catalog: Catalog, ledger_url: str) -> None:
    pod = await start_pod()
    keys = new_keys("acme", "umbrella")
    replica = await start_replica(catalog, pod, ledger_url, keys, flush_interval_s=0.1)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                await post(session, replica.url + MODEL, replica.headers("acme"), EMBED)
            await post(session, replica.url + "openai/v1/chat/completions", replica.headers("umbrella"), CHAT)
            await eventually_async(lambda: replica.metering.ledger.buffered == 0, within=30, what="rows written")

            async def read(tenant: str, query: str = "") -> tuple[int, Any]:
                async with session.get(replica.url + "usage" + query, headers=replica.headers(tenant)) as answer:
                    return answer.status, await answer.json()

            status, body = await read("acme")
            assert status == 200
            assert [(item["model"], item["requests"]) for item in body["output"]["usage"]] == [(MODEL, 3)]
            status, body = await read("umbrella", "?groupBy=key")
            assert [item["requests"] for item in body["output"]["usage"]] == [1]
            assert body["output"]["usage"][0]["tokensOut"] == 2
            status, body = await read("umbrella", "?groupBy=day")
            assert len(body["output"]["usage"]) == 1 and len(body["output"]["usage"][0]["day"]) == 10
            # Another tenant's name in the query changes nothing: it is refused.
            status, body = await read("umbrella", "?tenant=acme")
            assert status == 422 and body["output"] is None
            for query in ("?start=nope", "?start=2026-12-02&end=2026-12-01", "?groupBy=tenant"):
                status, body = await read("acme", query)
                assert status == 422, query
            async with session.get(replica.url + "usage") as anonymous:
                assert anonymous.status == 401
    finally:
        await replica.close()
        await pod.close()


async def test_the_usage_command_reads_every_tenant_or_one(catalog: Catalog, ledger_url: str) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    pod = await start_pod()
    replica = await start_replica(catalog, pod, ledger_url, new_keys("acme", "umbrella"), flush_interval_s=0.1)
    try:
        async with aiohttp.ClientSession() as session:
            for tenant in ("acme", "acme", "umbrella"):
                await post(session, replica.url + MODEL, replica.headers(tenant), EMBED)
    finally:
        await replica.close()
        await pod.close()
    command = [str(Path(sys.executable).with_name("modelcluster")), "usage", f"--ledger-url={ledger_url}"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)

    everyone = await asyncio.to_thread(run, "-o", "json")
    assert everyone.returncode == 0, everyone.stderr
    assert {row["tenant"]: row["requests"] for row in json.loads(everyone.stdout)} == {"acme": 2, "umbrella": 1}
    one = await asyncio.to_thread(run, "--tenant=umbrella", "--group-by=model", "-o", "json")
    assert [(row["model"], row["requests"]) for row in json.loads(one.stdout)] == [(MODEL, 1)]
    table = await asyncio.to_thread(run, "--since=2020-01-01", "--until=2020-06-01")
    assert table.returncode == 0 and table.stdout.split()[:2] == ["TENANT", "REQUESTS"]
    bad = await asyncio.to_thread(run, "--since=yesterday")
    assert bad.returncode == 2 and "not a date" in bad.stderr
