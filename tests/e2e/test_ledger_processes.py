"""The usage ledger of real ``modelcluster gateway`` processes in front of a real runtime pod.

SIGTERM in the middle of 200 concurrent requests (ledger on an SQLite file and on a real PostgreSQL server): every
answered request has exactly one row, with the status it was answered with, and nothing else but requests cut off
by the stop (499). And a budget reached through one gateway process answers 402 on a second one within seconds,
through the PostgreSQL ledger they share.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from kubernetes import client as k8s
from sqlalchemy import select

from modelcluster.api.naming import object_name
from modelcluster.devcluster.offline_models import MODEL_ID as MINILM
from modelcluster.gateway.metering.ledger import create_engine
from modelcluster.gateway.metering.schema import usage

from support import (
    GIANT_MODEL,
    Cluster,
    GatewayProcess,
    Tenant,
    create_key,
    drop_namespace,
    eventually,
    eventually_async,
    or_none,
)
from support.postgres import PostgresServer, fresh_database, remove, start_postgres

pytestmark = pytest.mark.cluster
START_TIMEOUT = 300  # the runtime imports torch and loads its model on a 2-core machine
LOAD = 200
#: Seconds a gateway may take from SIGTERM to its exit, the ledger written (the chart grants 60).
STOP_DEADLINE = 45
#: The gateways' shutdown timeout under test: a request still held after it is cut.
SHUTDOWN_TIMEOUT = 3
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
EMBED = {"text": "a cat sits on the mat"}


@dataclass(frozen=True)
class Served:
    """A tenant whose all-MiniLM-L6-v2 cluster runs one ready runtime pod."""

    tenant: Tenant
    catalog: Path


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture(scope="module")
def served(cluster: Cluster, gateway: GatewayProcess, test_catalog: Path) -> Iterator[Served]:
    if cluster.local is None:
        pytest.skip("needs the local control plane's process-backed pods")
    name = f"ledger-{uuid.uuid4().hex[:8]}"
    tenant = Tenant(name, create_key(cluster, name, concurrency=1000))
    url = f"{gateway.url}/models/v2/{MINILM}"
    try:
        eventually(
            lambda: (
                httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=tenant.headers, timeout=5).status_code == 200
            ),
            timeout=30,
            what="the gateway to learn the key",
        )
        capacity = {"capacity": {"min": 1, "desired": 1, "max": 1}, "timeout": 3600}
        created = httpx.put(url, headers=tenant.headers, json=capacity, timeout=30)
        assert created.status_code == 201, created.text
        eventually(
            lambda: httpx.get(url, headers=tenant.headers, timeout=10).json()["cluster"]["readyReplicas"] == 1,
            timeout=START_TIMEOUT,
            what="the runtime pod to be ready",
        )
        yield Served(tenant, test_catalog)
    finally:
        drop_namespace(cluster.core, name)


def start_gateway(cluster: Cluster, served: Served, workdir: Path, ledger_url: str, **settings: str) -> GatewayProcess:
    """A gateway process of its own on ``ledger_url``, routing to the tenant's pod (its first answer is a 200)."""
    env = {"MODELCLUSTER_GATEWAY_LEDGER_URL": ledger_url}
    env.update({f"MODELCLUSTER_GATEWAY_{key.upper()}": value for key, value in settings.items()})
    # Started while other tests load the machine: a gateway process may take long to import and migrate.
    args = [f"--catalog={served.catalog}", "--hold-timeout=60"]
    process = GatewayProcess(cluster, workdir, args, extra_env=env, ready_timeout=180)
    process.start()
    return process


def warm(process: GatewayProcess, served: Served) -> httpx.Response:
    """One answered request through ``process`` (it has learnt the key and the pod)."""
    url = f"{process.url}/models/v2/{MINILM}"

    def answered() -> httpx.Response | None:
        try:
            answer = httpx.post(url, headers=served.tenant.headers, json=EMBED, timeout=30)
        except httpx.HTTPError:
            return None
        return answer if answer.status_code == 200 else None

    found: httpx.Response = eventually(answered, timeout=60, what=f"a first answer through {process.url}")
    return found


async def rows(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(select(usage))).all())
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Answer:
    status: int
    request_id: str


def held_gauge(process: GatewayProcess, namespace: str) -> float:
    labels = f'model="{object_name(GIANT_MODEL)}",namespace="{namespace}"'
    for line in process.metrics().splitlines():
        if line.startswith(f"modelcluster_gateway_held_requests{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def load_then_sigterm(
    process: GatewayProcess, served: Served
) -> tuple[list[Answer | None], Answer | None, float]:
    """A request held for a waking cluster, then :data:`LOAD` concurrent requests (sent over about a second);
    SIGTERM once 20 have a 200.

    Returns each request's answer (None: no answer, the connection refused or cut), the held request's, and the
    seconds the process took from SIGTERM to its exit.
    """
    ok = 0

    async def one(session: aiohttp.ClientSession, index: int, model: str = MINILM) -> Answer | None:
        nonlocal ok
        await asyncio.sleep(index * 0.005)
        try:
            async with session.post(
                f"{process.url}/models/v2/{model}", json=EMBED, headers=served.tenant.headers
            ) as response:
                await response.read()
                answer = Answer(response.status, response.headers["X-Request-Id"])
        except aiohttp.ClientError:
            return None
        ok += answer.status == 200
        return answer

    assert process.process is not None
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        # The unschedulable cluster wakes and holds the request (its failure is reported only after 10 s).
        held = asyncio.create_task(one(session, 0, GIANT_MODEL))
        namespace = served.tenant.namespace
        await eventually_async(
            lambda: held_gauge(process, namespace) == 1, within=10, what="the request held for the waking cluster"
        )
        tasks = [asyncio.create_task(one(session, index)) for index in range(LOAD)]
        await eventually_async(lambda: ok >= 20, within=60, what="20 answers before SIGTERM")
        process.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        answers = await asyncio.gather(*tasks)
        held_answer = await held
        returncode = await asyncio.to_thread(process.process.wait, STOP_DEADLINE + 15)
    stopped = time.monotonic() - signalled
    assert returncode == 0, f"the gateway exited with {returncode} (log: {process.log_path})"
    return answers, held_answer, stopped


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigterm_mid_load_leaves_no_answered_request_without_its_one_row(
    cluster: Cluster, served: Served, database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if database == "sqlite":
        ledger_url = f"sqlite+aiosqlite:///{tmp_path / 'usage.sqlite'}"
    else:
        ledger_url = fresh_database(request.getfixturevalue("postgres"))
    # Nothing is written before the stop (no batch fills, no interval ends): SIGTERM writes the whole ledger.
    process = start_gateway(
        cluster,
        served,
        tmp_path,
        ledger_url,
        ledger_batch_size="100000",
        ledger_flush_interval_s="600",
        shutdown_timeout_s=str(SHUTDOWN_TIMEOUT),
    )
    giant = (served.tenant.namespace, object_name(GIANT_MODEL))
    custom = k8s.CustomObjectsApi(cluster.api_client)
    try:
        first = warm(process, served)
        idle = {"capacity": {"min": 0, "desired": 0, "max": 1}}
        created = httpx.put(f"{process.url}/models/v2/{GIANT_MODEL}", headers=served.tenant.headers, json=idle)
        assert created.status_code == 201, created.text
        answers, held, stopped = asyncio.run(load_then_sigterm(process, served))
    finally:
        process.stop()
        custom.delete_namespaced_custom_object(GROUP, VERSION, giant[0], PLURAL, giant[1])
        eventually(
            lambda: (
                or_none(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, giant[0], PLURAL, giant[1])) is None
            ),
            timeout=30,
            what="the unschedulable cluster to be gone",
        )
    # The held request was cut at the shutdown timeout, and the process did not wait for its hold timeout.
    assert held is None
    assert SHUTDOWN_TIMEOUT <= stopped < STOP_DEADLINE, f"the gateway took {stopped:.1f} s to stop"
    answered = {answer.request_id: answer.status for answer in answers if answer is not None}
    assert Counter(answered.values())[200] >= 20
    assert len(answered) == len([answer for answer in answers if answer is not None])  # ids are unique
    found = asyncio.run(rows(ledger_url))
    by_id = Counter(row.request_id for row in found)
    assert max(by_id.values()) == 1, "a request has two rows"
    assert set(by_id) >= {*answered, first.headers["X-Request-Id"]}, "an answered request has no row"
    statuses = {row.request_id: row.status for row in found}
    assert all(statuses[request_id] == status for request_id, status in answered.items())
    cut = {request_id: status for request_id, status in statuses.items() if request_id not in answered}
    cut.pop(first.headers["X-Request-Id"])
    # The rest are requests that reached the gateway and lost their client to the stop, recorded as such: the
    # held one among them.
    assert set(cut.values()) <= {499}, cut
    (held_row,) = [row for row in found if row.model == GIANT_MODEL]
    assert held_row.status == 499 and held_row.request_id in cut and held_row.cost == 0
    assert held_row.cluster == f"{giant[0]}/{giant[1]}"
    assert len(found) <= LOAD + 2
    assert {row.tenant for row in found} == {served.tenant.namespace}
    minilm = f"{served.tenant.namespace}/{object_name(MINILM)}"
    assert all(row.cluster == minilm for row in found if row.model == MINILM)
    log = process.log_path.read_text()
    assert "not written at shutdown" not in log and "dropped" not in log


def test_a_budget_reached_through_one_gateway_process_answers_402_on_the_other(
    cluster: Cluster, gateway: GatewayProcess, served: Served, postgres: PostgresServer, tmp_path: Path
) -> None:
    ledger_url = fresh_database(postgres)
    tenants = k8s.CustomObjectsApi(cluster.api_client)
    name = served.tenant.namespace
    cost = float(warm(gateway, served).headers["X-Inference-Cost"])
    assert cost > 0
    budget = {"spec": {"budget": {"amount": cost * 30, "period": "day"}}}  # about 30 requests
    tenants.patch_cluster_custom_object("modelcluster.dev", "v1alpha1", "tenants", name, budget)
    replicas: list[GatewayProcess] = []
    try:
        # A gateway process is ready once it knows every Tenant, the budget included.
        for replica in ("a", "b"):
            (tmp_path / replica).mkdir()
            replicas.append(
                start_gateway(
                    cluster,
                    served,
                    tmp_path / replica,
                    ledger_url,
                    ledger_flush_interval_s="0.2",
                    budget_refresh_s="0.5",
                )
            )
        first, second = replicas

        def answer_of(process: GatewayProcess) -> httpx.Response:
            return httpx.post(
                f"{process.url}/models/v2/{MINILM}", headers=served.tenant.headers, json=EMBED, timeout=30
            )

        ran = 0
        while (answer := answer_of(first)).status_code == 200:
            ran += 1
            assert ran < 300, "the budget never stopped the first gateway"
        assert answer.status_code == 402, answer.text
        assert ran >= 3
        reached = time.monotonic()
        # The second gateway learns the spend from the ledger within seconds; until then its requests run.
        while (late := answer_of(second)).status_code == 200:
            ran += 1
            assert time.monotonic() - reached < 5, "the budget did not reach the second gateway within 5 s"
        assert late.status_code == 402, late.text
        refused = answer_of(second)
        message = refused.json()["error"]
        assert refused.status_code == 402 and refused.json()["output"] is None
        assert f"budget of tenant {name}" in message and "per day" in message and "resets at" in message
        for process in (first, second, first, second):
            assert answer_of(process).status_code == 402
        # Cluster reads still work.
        clusters = httpx.get(f"{second.url}/models/v2/list/clusters", headers=served.tenant.headers, timeout=10)
        assert clusters.status_code == 200 and [c["modelId"] for c in clusters.json()["output"]] == [MINILM]
    finally:
        tenants.patch_cluster_custom_object("modelcluster.dev", "v1alpha1", "tenants", name, {"spec": {"budget": None}})
        for process in replicas:
            process.stop()
    # Nothing ran after the budget was reached: the only answered rows are the requests before it.
    found = asyncio.run(rows(ledger_url))
    assert Counter(row.status for row in found)[200] == ran
    refusals = [row for row in found if row.status != 200]
    assert len(refusals) >= 6
    assert all(row.status == 402 and row.cost == 0 and row.inference_seconds == 0 for row in refusals)
    assert {row.tenant for row in found} == {name}
