"""One readable log for ``modelcluster dev``: every line of its processes, with the process's name in front.

The operator and the gateway write to pipes that :func:`relay` copies line by line; the local
cluster's pod runner and the model pods write to files that :class:`FileFollower` tails (only what
is written after it starts). Both end their lines in one :class:`PrefixedLog`, so lines of
different processes never interleave mid-line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO

POLL_INTERVAL_S = 0.5


def prefixed(name: str, line: str, width: int) -> str:
    """``line`` behind ``name`` padded to ``width`` and a bar: ``operator | ...``."""
    return f"{name.ljust(width)} | {line.rstrip()}"


def pod_log_name(path: Path) -> str:
    """The prefix of a pod's log file ``<namespace>_<pod>.log``: ``pod <namespace>/<pod>``."""
    namespace, _, pod = path.stem.partition("_")
    return f"pod {namespace}/{pod}" if pod else f"pod {path.stem}"


class PrefixedLog:
    """Writes whole prefixed lines to one stream, one writer at a time."""

    def __init__(self, out: TextIO, width: int = 10) -> None:
        self._out = out
        self._width = width
        self._lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        with self._lock:
            self._out.write(prefixed(name, line, self._width) + "\n")
            self._out.flush()


def relay(stream: IO[bytes], name: str, log: PrefixedLog) -> threading.Thread:
    """Copy ``stream`` into ``log`` line by line until it ends, in a daemon thread (started)."""

    def copy() -> None:
        for raw in stream:
            log.write(name, raw.decode(errors="replace"))

    thread = threading.Thread(target=copy, name=f"relay-{name}", daemon=True)
    thread.start()
    return thread


class FileFollower:
    """Tails the files matching ``pattern`` in ``directory`` (new ones included) into ``log``.

    Files present at start are followed from their current end, so a restart does not replay old lines.
    """

    def __init__(self, directory: Path, pattern: str, name_of: Callable[[Path], str], log: PrefixedLog) -> None:
        self._directory = directory
        self._pattern = pattern
        self._name_of = name_of
        self._log = log
        self._offsets: dict[Path, int] = {path: path.stat().st_size for path in self._matches()}
        self._partial: dict[Path, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{pattern}", daemon=True)

    def _matches(self) -> list[Path]:
        return sorted(self._directory.glob(self._pattern)) if self._directory.is_dir() else []

    def start(self) -> FileFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after one last read, so lines written just before stopping still appear."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def poll(self) -> None:
        """Write the complete lines added to every followed file since the last poll."""
        for path in self._matches():
            offset = self._offsets.get(path, 0)
            try:
                with path.open("rb") as handle:
                    if handle.seek(0, 2) < offset:  # truncated or replaced: start over
                        offset = 0
                    handle.seek(offset)
                    chunk = handle.read()
            except FileNotFoundError:
                continue
            self._offsets[path] = offset + len(chunk)
            text = self._partial.pop(path, "") + chunk.decode(errors="replace")
            *lines, rest = text.split("\n")
            if rest:
                self._partial[path] = rest
            for line in lines:
                self._log.write(self._name_of(path), line)

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            self.poll()
        self.poll()
