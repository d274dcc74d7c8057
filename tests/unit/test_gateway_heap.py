"""gateway/heap.py, in a process of its own: freezing the start-up heap changes the collector for good."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROGRAM = """
import gc, json, sys
from modelcluster.gateway.heap import settle
kept = [{"n": i} for i in range(5000)]
before = gc.get_threshold()
frozen = settle(int(sys.argv[1]))
print(json.dumps({"frozen": frozen, "before": before, "after": gc.get_threshold(), "tracked": len(gc.get_objects())}))
"""


def settled(young_threshold: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(young_threshold)], capture_output=True, text=True, check=True
    )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


@pytest.mark.parametrize(("young", "expected"), [(20_000, 20_000), (0, 700)])
def test_settle_freezes_what_survived_start_up_and_sets_the_young_threshold(young: int, expected: int) -> None:
    answer = settled(young)
    frozen, tracked = answer["frozen"], answer["tracked"]
    assert isinstance(frozen, int) and isinstance(tracked, int)
    assert frozen > 5000  # the start-up objects, the kept list among them
    assert tracked < 100  # left in the collector's view: what was made after the freeze
    assert answer["before"] == [700, 10, 10]
    assert answer["after"] == [expected, 10, 10]
