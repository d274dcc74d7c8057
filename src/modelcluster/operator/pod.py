"""The pod template of a model's Deployment."""

from __future__ import annotations

from typing import Any

from modelcluster.operator.labels import MODEL_ID_ANNOTATION
from modelcluster.operator.workload import PodOptions, Workload

CONTAINER = "runtime"
PORT_NAME = "http"
HEALTH_PATH = "/health"
CACHE_VOLUME = "model-cache"
TMP_VOLUME = "tmp"
SHM_VOLUME = "dshm"
STARTUP_PERIOD_SECONDS = 10
# A runtime that turns unready (draining, from SIGTERM on) leaves the endpoints within 1-2 s,
# well inside its drain delay.
READINESS_PERIOD_SECONDS = 1
READINESS_FAILURES = 2


def _env(workload: Workload, options: PodOptions) -> list[dict[str, str]]:
    placement = workload.placement
    return [
        {"name": "MODEL_ID", "value": placement.model_id},
        {"name": "TASK", "value": placement.task},
        {"name": "PORT", "value": str(options.port)},
        {"name": "DEVICE", "value": "cuda" if placement.tier.gpus > 0 else "cpu"},
        {"name": "HF_HOME", "value": options.cache_dir},
        {"name": "HOME", "value": "/tmp"},
        # The grace period is derived from these: keep the runtime's timings and the pod's in step.
        {"name": "REQUEST_TIMEOUT_S", "value": str(options.request_timeout_seconds)},
        {"name": "DRAIN_DELAY_S", "value": str(options.drain_delay_seconds)},
        {"name": "DRAIN_TIMEOUT_S", "value": str(options.request_timeout_seconds)},
    ]


def _resources(workload: Workload, options: PodOptions) -> dict[str, Any]:
    tier = workload.placement.tier
    requests: dict[str, str] = {"cpu": tier.cpu, "memory": tier.memory}
    limits: dict[str, str] = {"memory": tier.memory}
    if tier.gpus > 0:
        # Extended resources: the request defaults to the limit and may not differ from it.
        limits[options.gpu_resource] = str(tier.gpus)
    return {"requests": requests, "limits": limits}


def _probe(period: int, failures: int) -> dict[str, Any]:
    # A slow answer fails only after the timeout (a busy CPU runtime); a 503 (loading, draining) fails at once.
    return {
        "httpGet": {"path": HEALTH_PATH, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container_security(options: PodOptions) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": options.run_as_user,
        "runAsGroup": options.run_as_user,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(workload: Workload, options: PodOptions) -> dict[str, Any]:
    startup_failures = max(1, -(-options.startup_timeout_seconds // STARTUP_PERIOD_SECONDS))
    return {
        "name": CONTAINER,
        "image": workload.placement.image,
        "imagePullPolicy": options.image_pull_policy,
        "ports": [{"name": PORT_NAME, "containerPort": options.port, "protocol": "TCP"}],
        "env": _env(workload, options),
        "resources": _resources(workload, options),
        "startupProbe": _probe(STARTUP_PERIOD_SECONDS, startup_failures),
        "readinessProbe": _probe(READINESS_PERIOD_SECONDS, READINESS_FAILURES),
        "livenessProbe": _probe(20, 3),
        "lifecycle": {"preStop": {"sleep": {"seconds": options.pre_stop_sleep_seconds}}},
        "securityContext": _container_security(options),
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": options.cache_dir},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
        ],
    }


def _scheduling(workload: Workload, options: PodOptions) -> dict[str, Any]:
    if workload.placement.tier.gpus == 0:
        return {}
    return {
        "nodeSelector": {options.gpu_node_label: "true"},
        "tolerations": [{"key": options.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}],
    }


def build_pod_template(workload: Workload, labels: dict[str, str], options: PodOptions) -> dict[str, Any]:
    """The ``spec.template`` of the Deployment."""
    return {
        "metadata": {
            "labels": dict(labels),
            "annotations": {
                MODEL_ID_ANNOTATION: workload.placement.model_id,
                "kubectl.kubernetes.io/default-container": CONTAINER,
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": options.termination_grace_seconds,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": options.run_as_user,
                "runAsGroup": options.run_as_user,
                "fsGroup": options.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **_scheduling(workload, options),
            "containers": [_container(workload, options)],
            "volumes": [
                {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": workload.placement.tier.cache}},
                {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
            ],
        },
    }
