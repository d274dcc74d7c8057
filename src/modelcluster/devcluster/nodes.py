"""Node objects for the simulated pool: GPU nodes as real GPU nodes look, plus plain CPU nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass(frozen=True)
class GpuType:
    """A GPU model as GPU feature discovery labels it: its product name and its memory in MiB."""

    size: str  # in node names
    product: str
    memory_mib: int


#: The big GPU of the pool, and a small one: the memory a tier needs decides where its pods may go.
GPU_80GB = GpuType("80gb", "NVIDIA-H100-80GB-HBM3", 81559)
GPU_24GB = GpuType("24gb", "NVIDIA-L4", 23034)


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


def gpu_node(index: int, gpus: int, gpu: GpuType = GPU_80GB) -> dict[str, Any]:
    """A node with ``gpus`` NVIDIA GPUs, the labels GPU feature discovery sets and the usual taint.

    Nodes of the 80 GB type are ``gpu-node-N``, others ``gpu-<size>-node-N``."""
    size = "" if gpu == GPU_80GB else f"{gpu.size}-"
    return _node(
        f"gpu-{size}node-{index}",
        {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.product": gpu.product,
            "nvidia.com/gpu.memory": str(gpu.memory_mib),
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


def node_pool(gpu_nodes: int, gpus_per_node: int, cpu_nodes: int, small_gpu_nodes: int = 0) -> list[dict[str, Any]]:
    """``gpu_nodes`` with 80 GB GPUs, ``small_gpu_nodes`` with 24 GB ones, and the CPU nodes."""
    return (
        [gpu_node(i, gpus_per_node) for i in range(gpu_nodes)]
        + [gpu_node(i, gpus_per_node, GPU_24GB) for i in range(small_gpu_nodes)]
        + [cpu_node(i) for i in range(cpu_nodes)]
    )
