"""Settings of one local control plane: its name, state directory, nodes and pod commands."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from modelcluster.devcluster.versions import cache_root


class ContainerSettings(BaseModel):
    """How the local cluster runs an image as an OCI container (runc) once ``make images`` has built it."""

    model_config = ConfigDict(extra="forbid")

    env: dict[str, str] = Field(default_factory=dict, description="extra environment, after the pod's own")
    volumes: dict[str, str] = Field(
        default_factory=dict, description="pod volume name -> host directory bound in its place (the model cache)"
    )


class PodCommand(BaseModel):
    """A local command that stands in for the containers of one image."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] = Field(min_length=1, description="argv; the container's args are appended")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment, after the pod's own")
    kubeconfig: bool = Field(
        default=False,
        description="give the process its pod's ServiceAccount token as a kubeconfig in $KUBECONFIG",
    )
    container: ContainerSettings | None = Field(
        default=None, description="run the built image with runc instead of the command, when it is built locally"
    )


class ClusterConfig(BaseModel):
    """What `cluster up` builds. Ports are chosen free at start and kept in the state file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="dev", pattern=r"^[a-z][a-z0-9]{0,9}$")
    gpu_nodes: int = Field(default=4, ge=0, le=100)
    gpus_per_node: int = Field(default=8, ge=1, le=64)
    small_gpu_nodes: int = Field(
        default=1, ge=0, le=100, description="GPU nodes with 24 GB GPUs, besides the `gpu_nodes` with 80 GB ones"
    )
    cpu_nodes: int = Field(default=1, ge=0, le=100)
    service_cidr: str = "10.96.0.0/16"
    simulated_pod_cidr: str = Field(default="10.200.0.0/16", description="addresses KWOK gives simulated pods")
    simulated_node_cidr: str = Field(
        default="10.199.0.0/16", description="the simulated nodes' addresses (KWOK's node IP is its first)"
    )
    pod_commands: dict[str, PodCommand] = Field(default_factory=dict, description="image -> local command")
    run_images: bool = Field(
        default=False,
        description="run the images `make images` built with runc (pod commands with container settings)",
    )

    @property
    def state_dir(self) -> Path:
        return cache_root() / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def simulated_node_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.simulated_node_cidr).hosts()))

    @property
    def process_pod_network(self) -> ipaddress.IPv4Network:
        """A /24 for process-backed pods, distinct per cluster name so two clusters can run side by side."""
        index = int(hashlib.sha256(self.name.encode()).hexdigest(), 16) % 200
        return ipaddress.IPv4Network(f"10.250.{index}.0/24")

    @property
    def bridge(self) -> str:
        return f"mcbr-{self.name}"[:15]

    @property
    def netns_prefix(self) -> str:
        return f"mc-{self.name}-"


def load_pod_commands(path: Path) -> dict[str, PodCommand]:
    """Read an image -> command mapping from a YAML file."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of image -> {{command, env}}")
    return {str(image): PodCommand.model_validate(entry) for image, entry in raw.items()}
