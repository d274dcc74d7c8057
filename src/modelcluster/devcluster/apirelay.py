"""A TCP relay from the pod network's host address to the apiserver on loopback.

The local apiserver listens on 127.0.0.1 only; a process in a pod's network namespace
cannot reach that. Pods that talk to the apiserver (the operator and the gateway, installed
by the Helm chart) connect to this relay on the bridge address instead, the way pods of a
real cluster reach the ``kubernetes`` Service. TLS passes through untouched.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BUFFER = 64 * 1024


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until either side closes, then close both."""
    with contextlib.suppress(OSError):
        while data := source.recv(BUFFER):
            target.sendall(data)
    for sock in (source, target):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


class ApiRelay:
    """Accepts on ``listen_host`` (a free port, or ``port``) and forwards each connection to ``upstream``."""

    def __init__(self, listen_host: str, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.server = socket.create_server((listen_host, port))
        self.address: tuple[str, int] = self.server.getsockname()[:2]
        self.thread = threading.Thread(target=self._accept, name="api-relay", daemon=True)

    def start(self) -> ApiRelay:
        self.thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.upstream, timeout=5.0)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), name="api-relay-pump", daemon=True).start()

    def close(self) -> None:
        self.server.close()
