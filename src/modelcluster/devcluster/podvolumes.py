"""The files of a container's ``configMap``, ``secret`` and projected volumes, written for a bind mount.

A kubelet materializes these volumes on the node; the pod runner does the same in a directory per
pod and volume, owned by the container's user. The projected volume of the ServiceAccount admission
(``kube-api-access-*``: a bound token, ``kube-root-ca.crt`` and the namespace) is written like any other.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from modelcluster.devcluster import podcredentials


def _items(data: dict[str, str], items: list[dict[str, Any]] | None) -> dict[str, str]:
    """Key -> relative path: every key, or the listed ones under their paths."""
    if not items:
        return {key: key for key in data}
    return {item["key"]: item["path"] for item in items if item["key"] in data}


def _write(directory: Path, files: dict[str, bytes], uid: int, gid: int) -> None:
    for relative, content in files.items():
        path = directory / relative
        if directory.resolve() not in path.resolve().parents:
            raise ValueError(f"volume file {relative!r} leaves its volume")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o400 if "token" in relative else 0o444)
        os.chown(path, uid, gid)


def config_map_files(api: k8s.CoreV1Api, namespace: str, source: dict[str, Any]) -> dict[str, bytes]:
    data = api.read_namespaced_config_map(source["name"], namespace).data or {}
    return {path: data[key].encode() for key, path in _items(data, source.get("items")).items()}


def secret_files(api: k8s.CoreV1Api, namespace: str, source: dict[str, Any]) -> dict[str, bytes]:
    data = api.read_namespaced_secret(source["secretName"], namespace).data or {}
    return {path: base64.b64decode(data[key]) for key, path in _items(data, source.get("items")).items()}


def token_file(api: k8s.CoreV1Api, pod: dict[str, Any], source: dict[str, Any]) -> dict[str, bytes]:
    request = podcredentials.token_request(pod)
    if source.get("audience"):
        request["spec"]["audiences"] = [source["audience"]]
    response = api.create_namespaced_service_account_token(
        podcredentials.service_account_of(pod), pod["metadata"]["namespace"], request
    )
    return {source.get("path", "token"): response.status.token.encode()}


def downward_files(pod: dict[str, Any], source: dict[str, Any]) -> dict[str, bytes]:
    fields = {"metadata.namespace": pod["metadata"]["namespace"], "metadata.name": pod["metadata"]["name"]}
    files: dict[str, bytes] = {}
    for item in source.get("items") or []:
        field_path = (item.get("fieldRef") or {}).get("fieldPath")
        if field_path not in fields:
            raise ValueError(f"downward API field {field_path!r} is not supported by the local cluster")
        files[item["path"]] = fields[field_path].encode()
    return files


def volume_files(api: k8s.CoreV1Api, pod: dict[str, Any], volume: dict[str, Any]) -> dict[str, bytes]:
    """The files of one configMap, secret or projected volume (ApiException when an object is missing)."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume:
        return config_map_files(api, namespace, volume["configMap"])
    if "secret" in volume:
        return secret_files(api, namespace, volume["secret"])
    files: dict[str, bytes] = {}
    for source in volume["projected"].get("sources") or []:
        if "serviceAccountToken" in source:
            files.update(token_file(api, pod, source["serviceAccountToken"]))
        elif "configMap" in source:
            files.update(config_map_files(api, namespace, source["configMap"]))
        elif "secret" in source:
            secret = dict(source["secret"])
            secret["secretName"] = secret.pop("name")
            files.update(secret_files(api, namespace, secret))
        elif "downwardAPI" in source:
            files.update(downward_files(pod, source["downwardAPI"]))
    return files


def write_volumes(
    api: k8s.CoreV1Api, pod: dict[str, Any], volumes: list[dict[str, Any]], root: Path, uid: int, gid: int
) -> dict[str, Path]:
    """Write each volume's files under ``root/<volume>``, readable by ``uid``; volume name -> directory."""
    shutil.rmtree(root, ignore_errors=True)
    directories: dict[str, Path] = {}
    for volume in volumes:
        directory = root / volume["name"]
        directory.mkdir(parents=True)
        _write(directory, volume_files(api, pod, volume), uid, gid)
        os.chown(directory, uid, gid)
        directories[volume["name"]] = directory
    return directories
