"""The egress guard's pure decisions: closed ranges, route conflicts, the nft table and its report."""

from __future__ import annotations

import ipaddress

import pytest

from modelcluster.devcluster import netguard
from modelcluster.devcluster.config import ClusterConfig

DEV = ClusterConfig(name="dev")


def test_every_range_handed_out_without_a_process_is_closed() -> None:
    closed = {str(network) for network in netguard.closed_ranges(DEV)}
    assert closed == {DEV.simulated_pod_cidr, DEV.simulated_node_cidr, DEV.service_cidr}
    assert ipaddress.ip_address(DEV.simulated_node_ip) in ipaddress.ip_network(DEV.simulated_node_cidr)


def test_the_process_pod_network_is_allowed_and_never_closed() -> None:
    pods = DEV.process_pod_network
    assert pods.subnet_of(netguard.POD_NETWORKS)
    assert not any(pods.overlaps(network) for network in netguard.closed_ranges(DEV))


def test_clusters_of_other_names_get_routes_of_their_own() -> None:
    assert netguard.route_metric(DEV) != netguard.route_metric(ClusterConfig(name="test"))
    assert netguard.table_name(DEV) != netguard.table_name(ClusterConfig(name="test"))


@pytest.mark.parametrize(
    ("route", "conflict"),
    [
        ({"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"}, False),
        ({"dst": "10.0.0.0/8", "dev": "wg0"}, False),  # less specific: the closed route wins
        ({"dst": "10.200.3.0/24", "dev": "wlan0"}, True),  # more specific: it would win
        ({"dst": "10.96.0.0/16", "dev": "eth1"}, True),  # the same range, a real route
        ({"dst": "10.200.0.0/16", "type": "unreachable", "metric": 4001}, False),  # another cluster's closed range
        ({"dst": "10.250.7.0/24", "dev": "mcbr-other"}, False),  # another cluster's pod bridge
    ],
)
def test_routes_inside_a_closed_range_conflict(route: dict[str, object], conflict: bool) -> None:
    assert bool(netguard.conflicting_routes(DEV, [route])) is conflict


def test_the_table_names_the_cluster_cgroup_and_every_pod_bridge() -> None:
    text = netguard.ruleset(DEV, "unified/modelcluster/dev")
    assert text.startswith("table inet modelcluster_dev {")
    assert 'socket cgroupv2 level 2 "unified/modelcluster/dev"' in text
    assert 'iifname "mcbr-*"' in text
    assert "127.0.0.0/8, 10.250.0.0/16" in text


def test_an_odd_cgroup_path_is_refused() -> None:
    with pytest.raises(netguard.NetGuardError):
        netguard.ruleset(DEV, 'x" accept; #')


LISTING = """table inet modelcluster_test {
    set refused4 {
        type ipv4_addr . inet_proto . inet_service
        size 65536
        flags dynamic
        elements = { 10.255.255.53 . udp . 53,
                 203.0.113.9 . tcp . 80 }
    }
    chain output {
        socket cgroupv2 level 2 "modelcluster/test" ip daddr != @allowed4 counter packets 3 bytes 180 reject
        socket cgroupv2 level 2 "modelcluster/test" ip6 daddr != ::1 counter packets 0 bytes 0 reject
    }
    chain prerouting {
        iifname "mcbr-*" ip daddr != @allowed4 meta l4proto { tcp, udp } counter packets 1 bytes 60 drop
    }
}
"""


def test_the_report_counts_packets_and_names_destinations() -> None:
    found = netguard.parse_report(LISTING)
    assert found.packets == 4
    assert [str(refusal) for refusal in found.destinations] == ["tcp 203.0.113.9:80", "udp 10.255.255.53:53"]
    assert not found.clean
    assert netguard.parse_report("table inet modelcluster_test {\n}\n").clean


def test_the_cgroup2_mount_is_found_in_unified_and_hybrid_layouts() -> None:
    unified = ["cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0"]
    hybrid = ["cgroup /sys/fs/cgroup/cpu cgroup rw 0 0", "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0"]
    assert str(netguard.cgroup2_mount(unified)) == "/sys/fs/cgroup"
    assert str(netguard.cgroup2_mount(hybrid)) == "/sys/fs/cgroup/unified"
    assert netguard.cgroup2_mount(["proc /proc proc rw 0 0"]) is None


def test_a_process_under_any_cluster_guard_is_recognised() -> None:
    assert netguard.guarded("0::/modelcluster/test\n")
    assert netguard.guarded("4:memory:/x\n0::/modelcluster/dev/sub\n")
    assert not netguard.guarded("0::/user.slice/session-1.scope\n")
    assert not netguard.guarded("0::/modelclusterx/test\n")
