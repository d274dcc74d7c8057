"""Helpers for the runtime tests: server handles (polling is ``support.eventually``; free ports are ``free_port``'s of
:mod:`modelcluster.devcluster.controlplane`)."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from modelcluster.devcluster.controlplane import free_port as free_port


class ServerHandle:
    def __init__(self, base_url: str, server: Any, thread: threading.Thread) -> None:
        self.base_url = base_url
        self.server = server
        self.thread = thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60, **kwargs)

    def metric(self, name: str, labels: str = "") -> float:
        """Read one sample from /metrics (``name{labels}``); 0 when absent."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0
