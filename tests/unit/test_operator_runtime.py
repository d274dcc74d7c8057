from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf
import yaml
from click.testing import CliRunner

from modelcluster.cli import main
from modelcluster.kube.client import KubeError
from modelcluster.operator.config import OperatorConfig
from modelcluster.operator.controller.handlers import build_registry
from modelcluster.operator.controller.kopf_settings import configure
from modelcluster.operator.controller.queue import WorkQueue
from modelcluster.operator.controller.store import Store

REPO = Path(__file__).resolve().parents[2]


async def test_queue_coalesces_and_retries() -> None:
    calls: list[tuple[str, str, bool]] = []
    failures = [KubeError(503, "unavailable")]

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        calls.append((namespace, name, apply))
        if failures:
            raise failures.pop()
        return None

    queue = WorkQueue(work, retry_delays=(0.01,))
    for _ in range(10):
        queue.request(("ns", "a"), 0.01)
    queue.request(("ns", "a"), 0.05, apply=True)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(calls) == 2 and queue.pending() == 0:
            break
    assert calls == [("ns", "a", True), ("ns", "a", True)]
    await queue.close()


async def test_queue_reschedules_on_request() -> None:
    calls: list[str] = []

    async def work(namespace: str, name: str, apply: bool) -> float | None:
        calls.append(name)
        return 0.01 if len(calls) < 3 else None

    queue = WorkQueue(work)
    queue.request(("ns", "b"), 0)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(calls) == 3 and queue.pending() == 0:
            break
    assert calls == ["b", "b", "b"]
    await queue.close()


def test_kopf_settings_are_set_on_purpose() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, OperatorConfig(workers=7))
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.progress_storage.prefix == "modelcluster.dev"
    assert settings.posting.level == logging.WARNING
    assert settings.watching.server_timeout and settings.watching.client_timeout
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.queueing.worker_limit == 7
    assert settings.peering.standalone is True
    assert settings.scanning.disabled is True


def test_registry_only_watches_modelclusters() -> None:
    registry = build_registry(Store())
    # No change-detecting handlers: nothing of kopf's is written onto the objects, nothing replays on restart.
    assert not registry._changing.get_all_handlers()
    watching = {str(handler.id) for handler in registry._watching.get_all_handlers()}
    assert watching == {"modelcluster-event"}
    assert registry is not kopf.get_default_registry()


def _rbac() -> list[dict[str, Any]]:
    with (REPO / "operator" / "rbac.yaml").open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def test_rbac_is_least_privilege() -> None:
    documents = _rbac()
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    for doc in documents:
        for rule in doc.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field]
            assert not {"deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
            # Deleting: only pods (the warm pool's standbys, which belong to no owner that garbage collection follows)
            if "delete" in rule["verbs"]:
                assert rule["resources"] == ["pods"] and rule["apiGroups"] == [""], rule
    cluster_role = next(doc for doc in documents if doc["kind"] == "ClusterRole")
    resources = {res for rule in cluster_role["rules"] for res in rule["resources"]}
    assert "secrets" not in resources and "leases" not in resources
    assert {"modelclusters", "modelclusters/status", "deployments", "services", "pods", "events"} <= resources


def test_cli_lists_the_operator_and_crd_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "operator" in result.output and "crd" in result.output
    help_text = CliRunner().invoke(main, ["operator", "--help"]).output
    assert "--namespace" in help_text and "--catalog" in help_text and "--leader-elect" in help_text


def test_cli_rejects_a_bad_catalog(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{id: x, task: chat}]", encoding="utf-8")
    result = CliRunner().invoke(main, ["operator", "--catalog", str(bad)])
    assert result.exit_code != 0
    assert "invalid catalog" in result.output


def test_gateway_rbac_reads_only_its_own_secrets() -> None:
    with (REPO / "operator" / "rbac-gateway.yaml").open(encoding="utf-8") as stream:
        documents = [doc for doc in yaml.safe_load_all(stream) if doc]
    cluster_rules = next(doc for doc in documents if doc["kind"] == "ClusterRole")["rules"]
    granted = {(res, verb) for rule in cluster_rules for res in rule["resources"] for verb in rule["verbs"]}
    assert granted == {
        *(("modelclusters", v) for v in ("get", "list", "watch", "create", "patch", "delete")),
        ("endpointslices", "list"),
        ("endpointslices", "watch"),
        ("services", "list"),
        ("services", "watch"),
        ("namespaces", "list"),
        ("namespaces", "watch"),
        ("tenants", "list"),
        ("tenants", "watch"),
    }
    # Secrets: read (never get by name, never written) in the key namespace only, which holds nothing else:
    # not the platform namespace, whose Secrets hold the signing key and Helm's release records.
    role = next(doc for doc in documents if doc["kind"] == "Role")
    assert role["metadata"]["namespace"] == "modelcluster-system-keys"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]}]
    (service_account,) = [doc for doc in documents if doc["kind"] == "ServiceAccount"]
    assert role["metadata"]["namespace"] != service_account["metadata"]["namespace"]
