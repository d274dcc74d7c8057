"""The OCI runtime configuration (``config.json``) of one container, from what a pod asks for (pure).

Only what the local cluster supports: the image's entrypoint and environment overridden by the
pod's, a user, a read-only root file system, bind mounts (the model cache, the ServiceAccount
token) and, optionally, an existing network namespace to join (the pod's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MASKED_PATHS = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/scsi")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class Mount:
    """A bind mount of ``source``, or a fresh tmpfs (``tmpfs``, no source) at ``destination``."""

    source: str
    destination: str
    read_only: bool = False
    tmpfs: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """What the image says (``buildah inspect``'s OCIv1 config): entrypoint, cmd, env, user, workdir."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""

    @classmethod
    def from_oci(cls, config: dict[str, Any]) -> ImageConfig:
        return cls(
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            env=tuple(config.get("Env") or ()),
            user=str(config.get("User") or ""),
            workdir=str(config.get("WorkingDir") or ""),
        )


@dataclass(frozen=True)
class ContainerRequest:
    """What a pod's container asks for, in Kubernetes' terms (command replaces the entrypoint, args the cmd)."""

    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root: bool = False
    mounts: tuple[Mount, ...] = ()
    network_namespace: str | None = None
    hostname: str = "container"


def process_args(image: ImageConfig, request: ContainerRequest) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
    if request.command is not None:
        return [*request.command, *(request.args or ())]
    return [*image.entrypoint, *(request.args if request.args is not None else image.cmd)]


def user_ids(image: ImageConfig, request: ContainerRequest) -> tuple[int, int]:
    """The numeric uid and gid: the pod's securityContext first, then the image's numeric USER (uid[:gid])."""
    uid_text, _, gid_text = image.user.partition(":")
    if request.run_as_user is None and uid_text and not uid_text.isdigit():
        raise ValueError(f"the image's USER {image.user!r} is not numeric and the pod sets no runAsUser")
    uid = request.run_as_user if request.run_as_user is not None else int(uid_text or 0)
    gid = request.run_as_group if request.run_as_group is not None else int(gid_text) if gid_text.isdigit() else uid
    return uid, gid


def merged_env(image: ImageConfig, request: ContainerRequest) -> list[str]:
    env = dict(item.split("=", 1) for item in image.env if "=" in item)
    env.update(request.env)
    env.setdefault("HOME", "/")
    return [f"{key}={value}" for key, value in env.items()]


def _mount(mount: Mount) -> dict[str, Any]:
    access = "ro" if mount.read_only else "rw"
    if mount.tmpfs:
        return {
            "destination": mount.destination,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", access],
        }
    return {"destination": mount.destination, "type": "bind", "source": mount.source, "options": ["rbind", access]}


def runtime_config(image: ImageConfig, request: ContainerRequest, rootfs: str) -> dict[str, Any]:
    """The ``config.json`` of an OCI bundle whose root file system is ``rootfs``."""
    args = process_args(image, request)
    if not args:
        raise ValueError("the container has no command: the image has no ENTRYPOINT/CMD and the pod sets none")
    uid, gid = user_ids(image, request)
    namespaces: list[dict[str, str]] = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")]
    namespaces.append(
        {"type": "network", "path": request.network_namespace} if request.network_namespace else {"type": "network"}
    )
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755"]},
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        # Writable scratch space, as kubelet's emptyDir /tmp is not given but every runtime needs one.
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
    ]
    # The pod's mounts replace a default at the same path (an emptyDir on /tmp, a memory one on /dev/shm).
    wanted = {mount.destination for mount in request.mounts}
    mounts = [mount for mount in mounts if mount["destination"] not in wanted]
    mounts.extend(_mount(mount) for mount in request.mounts)
    capabilities: list[str] = []  # none: the project's containers run as a user that is not root
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": merged_env(image, request),
            "cwd": image.workdir or "/",
            "capabilities": {kind: capabilities for kind in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": request.read_only_root},
        "hostname": request.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
