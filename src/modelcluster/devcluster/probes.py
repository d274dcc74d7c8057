"""Container probes as a kubelet runs them: thresholds, periods and the HTTP/TCP checks."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class ProbeSpec:
    """The parts of a Kubernetes probe that decide when it passes (defaults as the kubelet's)."""

    http_path: str | None = None
    port: int | None = None
    scheme: str = "HTTP"
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, probe: dict[str, Any] | None, container: dict[str, Any]) -> ProbeSpec | None:
        """Read a probe from a container spec (API field names); None when there is none."""
        if not probe:
            return None
        action = probe.get("httpGet") or probe.get("tcpSocket")
        port = resolve_port(action.get("port"), container) if action else None
        return cls(
            http_path=(probe["httpGet"].get("path") or "/") if "httpGet" in probe else None,
            port=port,
            scheme=str(probe.get("httpGet", {}).get("scheme") or "HTTP"),
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


def resolve_port(port: int | str | None, container: dict[str, Any]) -> int | None:
    """A probe port is a number or the name of one of the container's ports."""
    if port is None:
        return None
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for entry in container.get("ports") or []:
        if entry.get("name") == port:
            return int(entry["containerPort"])
    return None


@dataclass
class ProbeState:
    """Consecutive results of one probe and when it runs next."""

    spec: ProbeSpec
    next_at: float
    passing: bool = False
    successes: int = 0
    failures: int = 0
    last_message: str = field(default="")

    def record(self, ok: bool, message: str, now: float) -> bool:
        """Count one result; return True when the probe's verdict changed."""
        self.next_at = now + self.spec.period
        self.last_message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if not self.passing and self.successes >= self.spec.success_threshold:
                self.passing = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.passing and self.failures >= self.spec.failure_threshold:
                self.passing = False
                return True
        return False

    @property
    def failed_out(self) -> bool:
        """True once failures reached the threshold (for liveness and startup probes)."""
        return self.failures >= self.spec.failure_threshold


def check(spec: ProbeSpec, address: str) -> tuple[bool, str]:
    """Run one probe against ``address``; success and a message as the kubelet would log it."""
    if spec.port is None:
        return True, "no network action: passes once the process runs"
    if spec.http_path is not None:
        url = f"{spec.scheme.lower()}://{address}:{spec.port}{spec.http_path}"
        try:
            response = httpx.get(url, timeout=spec.timeout, verify=False)
        except httpx.HTTPError as error:
            return False, f"Get {url}: {error}"
        ok = 200 <= response.status_code < 400
        return ok, f"HTTP probe {url} answered {response.status_code}"
    try:
        with socket.create_connection((address, spec.port), timeout=spec.timeout):
            return True, "tcp connect ok"
    except OSError as error:
        return False, f"dial tcp {address}:{spec.port}: {error}"
