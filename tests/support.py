"""Helpers for tests: the cluster under test, and polling with a deadline instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kubernetes import client as k8s

from modelcluster.devcluster.config import ClusterConfig

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2, what: str = "") -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or probe!r}; last value: {last!r}")


@dataclass(frozen=True)
class Cluster:
    """The cluster under test: its kubeconfig, an API client and, when local, its config."""

    kubeconfig: Path
    api_client: k8s.ApiClient
    local: ClusterConfig | None

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)
