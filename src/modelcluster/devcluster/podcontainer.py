"""A pod's container as an OCI container request: what the pod runner hands to runc (pure).

The pod's command and args, its environment, its securityContext (user, group, read-only root
file system) and the volumes the local cluster supports: a volume the pod-commands file maps to
a host directory (the model cache), ``emptyDir`` (a tmpfs), and the files the runner writes for
``configMap``, ``secret`` and the projected ServiceAccount token. Any other volume is refused
by name, so a pod never runs with a mount silently missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelcluster.devcluster.images.oci import ContainerRequest, Mount

FILE_VOLUME_KINDS = ("configMap", "secret", "projected")
# No cluster DNS here: the loopback of the pod's network namespace answers nothing, so a lookup fails at once.
RESOLV_CONF = "nameserver 127.0.0.1\noptions ndots:0 timeout:1 attempts:1\n"


KUBERNETES_NAMES = "kubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local"


def hosts_file(pod_name: str, pod_ip: str, apiserver_ip: str) -> str:
    """The pod's /etc/hosts: loopback names, the pod's own name, and the kubernetes Service's names (no DNS)."""
    return (
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{pod_name}\n"
        f"{apiserver_ip}\t{KUBERNETES_NAMES}\n"
    )


class UnsupportedVolume(ValueError):
    """A volume the local cluster cannot give a container."""


@dataclass(frozen=True)
class VolumePlan:
    """Where each of a pod's volumes comes from: a host directory, or a tmpfs."""

    host_dirs: dict[str, Path]
    tmpfs: frozenset[str]


def plan_volumes(pod: dict[str, Any], mapped: dict[str, str], file_dirs: dict[str, Path]) -> VolumePlan:
    """Host directories for mapped and file volumes (written by the runner), tmpfs for ``emptyDir``."""
    host_dirs: dict[str, Path] = {}
    tmpfs: set[str] = set()
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if name in mapped:
            host_dirs[name] = Path(mapped[name])
        elif "emptyDir" in volume:
            tmpfs.add(name)
        elif name in file_dirs:
            host_dirs[name] = file_dirs[name]
    return VolumePlan(host_dirs, frozenset(tmpfs))


def file_volumes(pod: dict[str, Any], mapped: dict[str, str]) -> list[dict[str, Any]]:
    """The volumes whose files the runner has to write (configMap, secret, projected), not mapped to the host."""
    return [
        volume
        for volume in pod["spec"].get("volumes") or []
        if volume["name"] not in mapped and any(kind in volume for kind in FILE_VOLUME_KINDS)
    ]


def container_mounts(container: dict[str, Any], volumes: VolumePlan) -> tuple[Mount, ...]:
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        name, path, read_only = mount["name"], mount["mountPath"], bool(mount.get("readOnly", False))
        if name in volumes.tmpfs:
            mounts.append(Mount("", path, read_only, tmpfs=True))
        elif name in volumes.host_dirs:
            source = volumes.host_dirs[name]
            if mount.get("subPath"):
                source = source / mount["subPath"]
            mounts.append(Mount(str(source), path, read_only))
        else:
            raise UnsupportedVolume(f"volume {name!r} (mounted at {path}) is of a kind the local cluster cannot mount")
    return tuple(mounts)


def security(container: dict[str, Any], pod: dict[str, Any]) -> tuple[int | None, int | None, bool]:
    """runAsUser and runAsGroup (the container's, else the pod's) and readOnlyRootFilesystem."""
    pod_context = pod["spec"].get("securityContext") or {}
    context = container.get("securityContext") or {}
    user = context.get("runAsUser", pod_context.get("runAsUser"))
    group = context.get("runAsGroup", pod_context.get("runAsGroup"))
    return user, group, bool(context.get("readOnlyRootFilesystem", False))


def container_request(
    pod: dict[str, Any],
    container: dict[str, Any],
    env: dict[str, str],
    volumes: VolumePlan,
    extra_mounts: tuple[Mount, ...],
    network_namespace: str,
) -> ContainerRequest:
    user, group, read_only = security(container, pod)
    command = container.get("command")
    args = container.get("args")
    return ContainerRequest(
        command=tuple(command) if command else None,
        args=tuple(args) if args is not None else None,
        env=env,
        run_as_user=user,
        run_as_group=group,
        read_only_root=read_only,
        mounts=(*container_mounts(container, volumes), *extra_mounts),
        network_namespace=network_namespace,
        hostname=pod["metadata"]["name"][:63],
    )
