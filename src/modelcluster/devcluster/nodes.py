"""Node objects for the simulated pool: GPU nodes as real GPU nodes look, plus plain CPU nodes."""

from __future__ import annotations

from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def _node(name: str, labels: dict[str, str], capacity: dict[str, str], taints: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def gpu_node(index: int, gpus: int) -> dict[str, Any]:
    """A node with ``gpus`` NVIDIA GPUs, the labels GPU feature discovery sets and the usual taint."""
    return _node(
        f"gpu-node-{index}",
        {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/gpu.memory": "81559",
            "node.kubernetes.io/instance-type": f"gpu-{gpus}x",
        },
        {"cpu": "96", "memory": "1024Gi", "pods": "110", "ephemeral-storage": "2Ti", GPU_RESOURCE: str(gpus)},
        [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}],
    )


def cpu_node(index: int) -> dict[str, Any]:
    """A plain node without accelerators."""
    return _node(
        f"cpu-node-{index}",
        {"node.kubernetes.io/instance-type": "cpu"},
        {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "500Gi"},
        [],
    )


def node_pool(gpu_nodes: int, gpus_per_node: int, cpu_nodes: int) -> list[dict[str, Any]]:
    return [gpu_node(i, gpus_per_node) for i in range(gpu_nodes)] + [cpu_node(i) for i in range(cpu_nodes)]
