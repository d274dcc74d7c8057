"""The gateway's table of ModelClusters keeps what the watch brought over an older answer of its own write."""

from __future__ import annotations

from modelcluster.kube.index import ClusterTable
from modelcluster.kube.objects import Body

KEY = ("tenant-a", "m")


def cluster(version: str, status: str | None = None) -> Body:
    body: Body = {"metadata": {"namespace": KEY[0], "name": KEY[1], "resourceVersion": version}}
    if status is not None:
        body["status"] = {"status": status}
    return body


def test_the_answer_to_a_create_does_not_replace_the_status_the_watch_brought_first() -> None:
    table = ClusterTable()
    table.event("ADDED", cluster("100"))
    table.event("MODIFIED", cluster("101", "stopped"))
    table.put(cluster("100"))  # the create's answer, read after the watch's events
    assert table.get(KEY) == cluster("101", "stopped")


def test_the_answer_to_a_write_is_seen_before_its_watch_event() -> None:
    table = ClusterTable()
    table.put(cluster("100"))
    assert table.get(KEY) == cluster("100")
    table.put(cluster("102", "running"))  # a patch's answer, ahead of the watch
    assert table.get(KEY) == cluster("102", "running")
    table.event("MODIFIED", cluster("102", "running"))
    assert table.get(KEY) == cluster("102", "running")


def test_the_same_version_twice_is_one_change() -> None:
    changes: list[tuple[str, str]] = []
    table = ClusterTable(on_change=changes.append)
    table.event("ADDED", cluster("100"))
    table.put(cluster("100"))
    assert changes == [KEY]
