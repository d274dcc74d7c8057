"""Length bucketing: how the texts of one batch are split into forward passes so that padding stays small.

A forward pass pads every sequence to its longest one, so its cost is about ``count x longest`` tokens plus a
fixed cost per pass (launching the model, collating). :func:`plan_passes` sorts the items by length and cuts the
sorted list where that total is smallest: items of similar length share a pass, a long one does not drag short
ones up to its length, and uniform items stay in one pass. Pure functions; the handlers measure the lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Fixed cost of one forward pass, in padded tokens: small on a CPU (cost grows with tokens), large on a GPU
#: (a pass costs about the same whatever its size until the device is busy).
CPU_PASS_OVERHEAD_TOKENS = 16
GPU_PASS_OVERHEAD_TOKENS = 2048


def pass_overhead_tokens(device: str) -> int:
    """The fixed cost of a forward pass on ``device``, in padded tokens."""
    return CPU_PASS_OVERHEAD_TOKENS if device == "cpu" else GPU_PASS_OVERHEAD_TOKENS


def padded_tokens(lengths: Sequence[int]) -> int:
    """Tokens one pass over these lengths computes: each sequence padded to the longest."""
    return len(lengths) * max(lengths, default=0)


def plan_passes(lengths: Sequence[int], max_pass: int, overhead: int = CPU_PASS_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of ``lengths`` grouped into forward passes of at most ``max_pass`` items.

    Minimises the sum over passes of ``overhead + count x longest`` among splits of the length-sorted items into
    runs (dynamic programming over the sorted order, ``O(n x max_pass)``). Passes come shortest first; the
    indices within a pass are in length order.
    """
    if max_pass < 1:
        raise ValueError("max_pass must be at least 1")
    order = sorted(range(len(lengths)), key=lambda index: lengths[index])
    ordered = [max(1, lengths[index]) for index in order]
    count = len(ordered)
    best = [0] * (count + 1)  # best[end]: least cost of the first `end` sorted items
    cut = [0] * (count + 1)  # cut[end]: where the last pass of that best split starts
    for end in range(1, count + 1):
        longest = ordered[end - 1]
        best[end] = -1
        for start in range(max(0, end - max_pass), end):
            cost = best[start] + overhead + (end - start) * longest
            if best[end] < 0 or cost < best[end]:
                best[end], cut[end] = cost, start
    passes: list[list[int]] = []
    end = count
    while end > 0:
        start = cut[end]
        passes.append(order[start:end])
        end = start
    passes.reverse()
    return passes
