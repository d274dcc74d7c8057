"""``python -m modelcluster.runtime``: the same as ``modelcluster runtime``."""

from modelcluster.runtime.cli import runtime

if __name__ == "__main__":
    runtime()
