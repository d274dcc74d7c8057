"""The runtime's own start, phase by phase, as ``/status``, the log and ``/metrics`` report it.

Phases, each ending at a mark (unix time, this process's clock):

- ``interpreter``: from the process's creation (the kernel's start time of the process) to the server's
  libraries imported (Python's start-up, uvicorn, FastAPI and the runtime's own modules);
- ``imports``: the task's libraries (torch, transformers, sentence-transformers, ...) imported and the device
  initialised;
- ``weights``: the model read (downloaded first when not cached) and placed on the device;
- ``warmup``: the warm-up pass done: the runtime answers ``/health`` 200 from here on;
- ``first_answer``: from ready to the first answered ``/run``.

A phase whose start was never marked (a runtime created without the CLI, as tests do) starts at the previous
mark there is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module

logger = logging.getLogger(__name__)

PHASES = ("interpreter", "imports", "weights", "warmup", "first_answer")

#: The libraries each task module needs, imported in the ``imports`` phase (a missing one is left to the
#: loader, which names it when it really needs it). Other modules need torch and transformers.
TASK_LIBRARIES: dict[str, tuple[str, ...]] = {
    "embeddings": ("torch", "sentence_transformers"),
    "diffusion": ("torch", "diffusers"),
}
DEFAULT_LIBRARIES = ("torch", "transformers")


def process_start_time() -> float:
    """Unix time at which the kernel started this process (falls back to now where it cannot be read)."""
    try:
        psutil = import_module("psutil")
        return float(psutil.Process().create_time())
    except (ImportError, OSError):
        return time.time()


def phase_seconds(started: float, marks: dict[str, float]) -> dict[str, float]:
    """Seconds each marked phase took: from the previous mark there is (the process start for the first)."""
    seconds: dict[str, float] = {}
    previous = started
    for phase in PHASES:
        end = marks.get(phase)
        if end is None:
            continue
        seconds[phase] = max(0.0, end - previous)
        previous = end
    return seconds


def summary(seconds: dict[str, float]) -> str:
    """One log line: each phase's seconds, in order."""
    return ", ".join(f"{phase.replace('_', ' ')} {value:.2f}s" for phase, value in seconds.items())


@dataclass
class StartupClock:
    """Marks of one runtime process's start; ``on_phase`` hears each phase's seconds once (the histogram)."""

    started: float = field(default_factory=process_start_time)
    marks: dict[str, float] = field(default_factory=dict)
    on_phase: Callable[[str, float], None] | None = None
    path: str = "cold"  # cold: a process started for the model; standby: a warm standby claimed for it

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def listen(self, on_phase: Callable[[str, float], None]) -> None:
        """Tell ``on_phase`` every phase from now on, and at once those already marked."""
        self.on_phase = on_phase
        for phase, seconds in self.seconds().items():
            on_phase(phase, seconds)

    def mark(self, phase: str, at: float | None = None) -> None:
        """``phase`` ended now (or at ``at``); only its first mark counts."""
        if phase not in PHASES:
            raise ValueError(f"unknown start-up phase {phase!r}")
        with self._lock:
            if phase in self.marks:
                return
            self.marks[phase] = time.time() if at is None else at
            seconds = phase_seconds(self.started, self.marks).get(phase, 0.0)
        if self.on_phase is not None:
            self.on_phase(phase, seconds)
        if phase == "warmup":
            logger.info("start-up: %s; ready %.2fs after the process started", summary(self.seconds()), self.since())
        elif phase == "first_answer":
            logger.info("first answer %.2fs after the process started (%.2fs after ready)", self.since(), seconds)

    def seconds(self) -> dict[str, float]:
        with self._lock:
            return phase_seconds(self.started, self.marks)

    def since(self, phase: str | None = None) -> float:
        """Seconds from the process start to ``phase``'s mark (the latest mark when None)."""
        with self._lock:
            if phase is not None:
                return self.marks[phase] - self.started
            return max(self.marks.values(), default=self.started) - self.started

    def report(self) -> dict[str, object]:
        """What ``/status`` shows as ``startup``."""
        with self._lock:
            marks = dict(self.marks)
        seconds = phase_seconds(self.started, marks)
        return {
            "path": self.path,
            "process_started_at": self.started,
            "phases": {phase: round(value, 3) for phase, value in seconds.items()},
            "ready_after_s": round(marks["warmup"] - self.started, 3) if "warmup" in marks else None,
            "first_answer_after_s": round(marks["first_answer"] - self.started, 3) if "first_answer" in marks else None,
        }


def task_libraries(loader_module: str) -> tuple[str, ...]:
    """The libraries the task module ``loader_module`` (e.g. ``embeddings``) imports to load and run a model."""
    return TASK_LIBRARIES.get(loader_module, DEFAULT_LIBRARIES)


def import_libraries(names: tuple[str, ...]) -> dict[str, float]:
    """Import each library, timed; one that is not installed is skipped (the loader reports it if it needs it)."""
    took: dict[str, float] = {}
    for name in names:
        began = time.monotonic()
        try:
            import_module(name)
        except ImportError as error:
            logger.info("start-up: %s is not importable here (%s); the loader decides", name, error)
            continue
        took[name] = time.monotonic() - began
    logger.info("start-up: imported %s", ", ".join(f"{name} in {value:.2f}s" for name, value in took.items()))
    return took
