"""A pod's container as an OCI container request: volumes, securityContext, command and args (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcluster.devcluster.images.oci import Mount
from modelcluster.devcluster.podcontainer import (
    UnsupportedVolume,
    container_request,
    file_volumes,
    plan_volumes,
)


def pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
    container = {"name": "runtime", "image": "img", "volumeMounts": mounts, "securityContext": context}
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"containers": [container], "volumes": volumes, "securityContext": {"runAsUser": 10001}},
    }


VOLUMES = [
    {"name": "model-cache", "emptyDir": {"sizeLimit": "10Gi"}},
    {"name": "tmp", "emptyDir": {}},
    {"name": "catalog", "configMap": {"name": "catalog"}},
    {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
]
MOUNTS = [
    {"name": "model-cache", "mountPath": "/models/cache"},
    {"name": "tmp", "mountPath": "/tmp"},
    {"name": "catalog", "mountPath": "/etc/catalog", "readOnly": True},
    {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True},
]


def test_mapped_volumes_bind_the_host_empty_dirs_are_tmpfs_and_files_are_written() -> None:
    spec = pod(VOLUMES, MOUNTS, readOnlyRootFilesystem=True, runAsGroup=20)
    mapped = {"model-cache": "/host/hf-home"}
    assert [v["name"] for v in file_volumes(spec, mapped)] == ["catalog", "kube-api-access-x"]
    files = {"catalog": Path("/state/catalog"), "kube-api-access-x": Path("/state/token")}
    volumes = plan_volumes(spec, mapped, files)
    container = spec["spec"]["containers"][0]
    request = container_request(spec, container, {"A": "1"}, volumes, (), "/run/netns/pod")
    assert request.mounts == (
        Mount("/host/hf-home", "/models/cache"),
        Mount("", "/tmp", tmpfs=True),
        Mount("/state/catalog", "/etc/catalog", read_only=True),
        Mount("/state/token", "/var/run/secrets/kubernetes.io/serviceaccount", read_only=True),
    )
    assert (request.run_as_user, request.run_as_group, request.read_only_root) == (10001, 20, True)
    assert request.network_namespace == "/run/netns/pod"
    assert request.command is None and request.args is None


def test_a_volume_of_another_kind_is_refused_by_name() -> None:
    spec = pod([{"name": "data", "hostPath": {"path": "/srv"}}], [{"name": "data", "mountPath": "/data"}])
    volumes = plan_volumes(spec, {}, {})
    with pytest.raises(UnsupportedVolume, match="'data'"):
        container_request(spec, spec["spec"]["containers"][0], {}, volumes, (), "/run/netns/pod")
