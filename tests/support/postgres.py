"""A real PostgreSQL server for tests: Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``) run into a
temporary directory on a loopback port, as the ``postgres`` user when the tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelcluster.devcluster.controlplane import free_port

USER = "modelcluster"


def binaries() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` (``make`` installs the package on a fresh machine)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql (the Makefile's host-tools)")
    return found[-1].parent


@dataclass
class PostgresServer:
    root: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, cwd=self.root)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


def start_postgres() -> PostgresServer:
    root = Path(tempfile.mkdtemp(prefix="mc-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PostgresServer(root, free_port(), binaries())
    server.init()
    server.start()
    return server


def fresh_database(server: PostgresServer) -> str:
    """The URL of a new, empty database on ``server``."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    argv = [str(server.bin / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, name]
    subprocess.run(argv, check=True, capture_output=True)
    return server.url.rsplit("/", 1)[0] + "/" + name


def remove(server: PostgresServer) -> None:
    subprocess.run(
        [
            *(["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []),
            str(server.bin / "pg_ctl"),
            "-D",
            str(server.data),
            "-m",
            "immediate",
            "stop",
        ],
        capture_output=True,
        check=False,
    )
    shutil.rmtree(server.root, ignore_errors=True)
