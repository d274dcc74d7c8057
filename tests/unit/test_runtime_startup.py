"""The runtime's start-up phases: durations from marks, the report, the log line and the histogram hook."""

from __future__ import annotations

import pytest

from modelcluster.runtime.startup import PHASES, StartupClock, phase_seconds, summary, task_libraries
from modelcluster.runtime.tasks import LOADERS, loader_module


def test_each_phase_runs_from_the_previous_mark() -> None:
    marks = {"interpreter": 101.0, "imports": 105.0, "weights": 105.5, "warmup": 106.0, "first_answer": 106.25}
    assert phase_seconds(100.0, marks) == {
        "interpreter": 1.0,
        "imports": 4.0,
        "weights": 0.5,
        "warmup": 0.5,
        "first_answer": 0.25,
    }


def test_an_unmarked_phase_is_left_out_and_the_next_starts_at_the_previous_mark() -> None:
    assert phase_seconds(100.0, {"imports": 103.0, "warmup": 104.0}) == {"imports": 3.0, "warmup": 1.0}
    assert phase_seconds(100.0, {}) == {}


def test_the_clock_reports_and_tells_each_phase_once() -> None:
    heard: list[tuple[str, float]] = []
    clock = StartupClock(started=100.0, on_phase=lambda phase, seconds: heard.append((phase, seconds)))
    clock.mark("interpreter", at=101.0)
    clock.mark("imports", at=104.0)
    clock.mark("imports", at=200.0)  # only the first mark counts
    clock.mark("weights", at=104.5)
    clock.mark("warmup", at=105.0)
    assert heard == [("interpreter", 1.0), ("imports", 3.0), ("weights", 0.5), ("warmup", 0.5)]
    report = clock.report()
    assert report["phases"] == {"interpreter": 1.0, "imports": 3.0, "weights": 0.5, "warmup": 0.5}
    assert (report["ready_after_s"], report["first_answer_after_s"]) == (5.0, None)
    clock.mark("first_answer", at=105.2)
    assert clock.report()["first_answer_after_s"] == 5.2
    assert clock.since("imports") == 4.0


def test_an_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown start-up phase"):
        StartupClock().mark("coffee")


def test_the_summary_names_every_phase_in_order() -> None:
    assert summary({"imports": 3.0, "first_answer": 0.25}) == "imports 3.00s, first answer 0.25s"
    assert PHASES[0] == "interpreter" and PHASES[-1] == "first_answer"


def test_every_task_module_has_its_libraries() -> None:
    modules = {loader_module(task) for task in LOADERS}
    assert task_libraries("embeddings") == ("torch", "sentence_transformers")
    assert all(task_libraries(module)[0] == "torch" for module in modules)
    with pytest.raises(ValueError, match="unknown task"):
        loader_module("coffee")


def test_a_listener_hears_the_phases_marked_before_it_came() -> None:
    clock = StartupClock(started=100.0)
    clock.mark("interpreter", at=102.0)
    heard: list[tuple[str, float]] = []
    clock.listen(lambda phase, seconds: heard.append((phase, seconds)))
    clock.mark("imports", at=103.0)
    assert heard == [("interpreter", 2.0), ("imports", 1.0)]
    assert clock.report()["path"] == "cold"
