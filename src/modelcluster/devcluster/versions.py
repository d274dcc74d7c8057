"""Pinned versions of the local control plane and where its binaries are cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"


def cache_root() -> Path:
    """``$MODELCLUSTER_CACHE`` or ``~/.cache/modelcluster`` — never inside the repository."""
    configured = os.environ.get("MODELCLUSTER_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelcluster"


@dataclass(frozen=True)
class Binaries:
    """Paths of one versioned set of control plane binaries."""

    directory: Path

    @classmethod
    def at(cls, root: Path) -> Binaries:
        key = f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"
        return cls(root / "bin" / key)

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.directory / "kube-controller-manager"

    @property
    def kube_scheduler(self) -> Path:
        return self.directory / "kube-scheduler"

    @property
    def kwok(self) -> Path:
        return self.directory / "kwok"

    @property
    def stages(self) -> Path:
        return self.directory / "kwok-stages"

    def complete(self) -> bool:
        files = (self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kube_scheduler, self.kwok)
        return all(path.is_file() and os.access(path, os.X_OK) for path in files) and self.stages.is_dir()
