"""A tiny HTTP server for smoke-testing process-backed pods.

``GET /`` answers JSON with the pod name, namespace and arguments it was started with;
``GET /healthz`` answers 200. Usage: ``python -m modelcluster.devcluster.echoserver PORT``.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            body = b"ok"
        else:
            body = json.dumps(
                {
                    "pod": os.environ.get("POD_NAME"),
                    "namespace": os.environ.get("POD_NAMESPACE"),
                    "greeting": os.environ.get("GREETING"),
                    "argv": sys.argv[1:],
                }
            ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("0.0.0.0", port), EchoHandler)
    print(f"echo server listening on :{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
