"""API keys on a real control plane: the ``modelcluster keys`` commands and the gateway's key table."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio import client as async_client
from kubernetes_asyncio import config as async_config

from modelcluster.gateway.keys import key_id_of
from modelcluster.gateway.keystore import KeyStore

from support import Cluster, drop_namespace, eventually_async

pytestmark = pytest.mark.cluster

CLI = Path(sys.executable).with_name("modelcluster")
#: Seconds a running key store may take to follow a created or revoked key.
DEADLINE = 10


def namespace_exists(cluster: Cluster, name: str) -> bool:
    try:
        cluster.core.read_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


@pytest.fixture
def key_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace for key Secrets that does not exist yet (``keys create`` makes it)."""
    name = f"keys-{uuid.uuid4().hex[:10]}"
    yield name
    drop_namespace(cluster.core, name)


@pytest.fixture
def tenant(cluster: Cluster) -> Iterator[str]:
    """A tenant whose namespace does not exist yet."""
    name = f"tenant-{uuid.uuid4().hex[:10]}"
    yield name
    drop_namespace(cluster.core, name)


@pytest.fixture
async def api_client(cluster: Cluster) -> AsyncIterator[async_client.ApiClient]:
    configuration = async_client.Configuration()
    await async_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    async with async_client.ApiClient(configuration) as api:
        yield api


def keys_cli(cluster: Cluster, key_namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelcluster keys ARGS`` as a process; the key namespace comes from ``MODELCLUSTER_NAMESPACE``."""
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), MODELCLUSTER_NAMESPACE=key_namespace)
    return subprocess.run([str(CLI), "keys", *args], env=env, capture_output=True, text=True, timeout=120)


async def run_keys_cli(cluster: Cluster, key_namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(keys_cli, cluster, key_namespace, *args)


def created_key(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert key_id_of(key) is not None, "the last line of standard output is not a key"
    return key


async def test_a_key_from_creation_to_revocation(
    cluster: Cluster, key_namespace: str, tenant: str, api_client: async_client.ApiClient
) -> None:
    key = created_key(await run_keys_cli(cluster, key_namespace, "create", "--tenant", tenant, "--concurrency", "3"))
    key_id = key_id_of(key)
    assert key_id is not None
    secret_part = key.split("_", 2)[2]
    assert namespace_exists(cluster, tenant)
    assert namespace_exists(cluster, key_namespace)

    # The Secret holds the hash, the tenant and the limit, and nowhere the key.
    secret = cluster.core.read_namespaced_secret(f"modelcluster-key-{key_id}", key_namespace)
    stored = json.dumps(cluster.api_client.sanitize_for_serialization(secret))
    data = {name: base64.b64decode(value).decode() for name, value in secret.data.items()}
    assert data == {"sha256": hashlib.sha256(key.encode()).hexdigest(), "tenant": tenant, "concurrency": "3"}
    assert secret_part not in stored
    assert all(secret_part not in value for value in data.values())
    assert secret.metadata.labels == {
        "app.kubernetes.io/part-of": "modelcluster",
        "modelcluster.dev/api-key": "true",
        "modelcluster.dev/tenant": tenant,
    }

    listed = await run_keys_cli(cluster, key_namespace, "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0] == ["KEY", "ID", "TENANT", "CONCURRENCY", "CREATED"]
    assert [row[:3] for row in rows[1:]] == [[key_id, tenant, "3"]]
    assert secret_part not in listed.stdout + listed.stderr
    assert data["sha256"] not in listed.stdout + listed.stderr

    store = KeyStore(key_namespace)
    await store.start(api_client)
    try:
        assert store.ready
        record = store.authenticate(f"Key {key}")
        assert record is not None
        assert (record.key_id, record.tenant, record.concurrency) == (key_id, tenant, 3)
        assert store.authenticate(key) == record
        assert store.authenticate(f"Key mc_{key_id}_{'x' * 43}") is None
        assert store.authenticate(None) is None

        # A key created while the store runs arrives through the watch.
        second = created_key(await run_keys_cli(cluster, key_namespace, "create", "--tenant", tenant))
        await eventually_async(
            lambda: store.authenticate(f"Key {second}") is not None, DEADLINE, 0.05, "the store to learn the second key"
        )
        second_record = store.authenticate(f"Key {second}")
        assert second_record is not None
        assert second_record.concurrency == 10

        revoked = await run_keys_cli(cluster, key_namespace, "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert key_id in revoked.stdout
        await eventually_async(
            lambda: store.authenticate(f"Key {key}") is None, DEADLINE, 0.05, "the store to forget the revoked key"
        )
        assert store.authenticate(f"Key {second}") == second_record
    finally:
        await store.stop()
    assert not store.ready

    with pytest.raises(ApiException) as missing:
        cluster.core.read_namespaced_secret(f"modelcluster-key-{key_id}", key_namespace)
    assert missing.value.status == 404
    listed = await run_keys_cli(cluster, key_namespace, "list")
    assert key_id not in listed.stdout
    assert key_id_of(second) in listed.stdout


def test_revoking_an_unknown_key_fails_clearly(cluster: Cluster, key_namespace: str) -> None:
    result = keys_cli(cluster, key_namespace, "revoke", "0123456789ab")
    assert result.returncode == 1
    assert f"no API key with id 0123456789ab in namespace {key_namespace}" in result.stderr
    assert result.stdout == ""


def test_an_invalid_tenant_is_refused_before_anything_is_created(cluster: Cluster, key_namespace: str) -> None:
    result = keys_cli(cluster, key_namespace, "create", "--tenant", "Not_A_Namespace")
    assert result.returncode == 2
    assert "DNS-1123" in result.stderr
    assert result.stdout == ""
    assert not namespace_exists(cluster, key_namespace)
