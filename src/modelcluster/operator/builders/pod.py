"""The pod template of a model's Deployment."""

from __future__ import annotations

from typing import Any

from modelcluster.api.labels import MODEL_ID_ANNOTATION, selector_labels
from modelcluster.api.pod_auth import VERIFIER_ENV
from modelcluster.operator.builders.model_cache import cache_access_mode, cache_claim_name
from modelcluster.operator.builders.workload import PodOptions, Workload

CONTAINER = "runtime"
PORT_NAME = "http"
HEALTH_PATH = "/health"
CACHE_VOLUME = "model-cache"
TMP_VOLUME = "tmp"
SHM_VOLUME = "dshm"
# The kubelet's floor: a started runtime turns Ready within a second of its first healthy answer (the gateway
# routes on that answer already, see gateway/first_answer.py).
STARTUP_PERIOD_SECONDS = 1
# A runtime that turns unready (draining, from SIGTERM on) leaves the endpoints within 1-2 s,
# well inside its drain delay.
READINESS_PERIOD_SECONDS = 1
READINESS_FAILURES = 2
# The runtime writes the cause of a fatal load error here; with FallbackToLogsOnError a container that dies
# without writing it reports the end of its log. Either way it lands in lastState.terminated.message.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"


def _env(workload: Workload, options: PodOptions) -> list[dict[str, Any]]:
    placement = workload.placement
    gpus = placement.tier.gpus
    env: list[dict[str, Any]] = [
        {"name": "MODEL_ID", "value": placement.model_id},
        {"name": "TASK", "value": placement.task},
        {"name": "PORT", "value": str(options.port)},
        {"name": "DEVICE", "value": "cuda" if gpus > 0 else "cpu"},
        {"name": "HF_HOME", "value": options.cache_dir},
        {"name": "HOME", "value": "/tmp"},
        # The grace period is derived from these: keep the runtime's timings and the pod's in step.
        {"name": "REQUEST_TIMEOUT_S", "value": str(options.request_timeout_seconds)},
        {"name": "DRAIN_DELAY_S", "value": str(options.drain_delay_seconds)},
        {"name": "DRAIN_TIMEOUT_S", "value": str(options.request_timeout_seconds)},
    ]
    if gpus > 0:
        # The runtime spreads the model over every device: vLLM tensor parallelism, transformers device_map.
        env.append({"name": "GPU_COUNT", "value": str(gpus)})
    if workload.credential_sha256 is not None:
        # Only the hash of the cluster's credential: reading the pod spec gives no way to call the pod.
        env.append({"name": VERIFIER_ENV, "value": workload.credential_sha256})
    if placement.token_secret is not None:
        secret = placement.token_secret
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}})
    return env


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
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": TERMINATION_MESSAGE_POLICY,
        "securityContext": _container_security(options),
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": options.cache_dir},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
        ],
    }


def gpu_node_affinity(workload: Workload, options: PodOptions) -> dict[str, Any] | None:
    """A required node affinity on the labels of GPU feature discovery: each GPU has the memory the tier needs
    per device (``nvidia.com/gpu.memory``, MiB), and is one of the tier's products when it names any."""
    tier = workload.placement.tier
    if tier.gpus == 0:
        return None
    expressions: list[dict[str, Any]] = [
        # Gt is strict: at least the memory needed.
        {"key": options.gpu_memory_label, "operator": "Gt", "values": [str(tier.gpu_memory_mib_per_device - 1)]}
    ]
    if tier.gpu_products:
        expressions.append({"key": options.gpu_product_label, "operator": "In", "values": list(tier.gpu_products)})
    return {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
    }


def _same_node_affinity(workload: Workload) -> dict[str, Any] | None:
    """Pods sharing a ReadWriteOnce claim must run on one node (the volume attaches to one node)."""
    if cache_access_mode(workload) != "ReadWriteOnce":
        return None
    term = {"labelSelector": {"matchLabels": selector_labels(workload.name)}, "topologyKey": HOSTNAME_TOPOLOGY}
    return {"requiredDuringSchedulingIgnoredDuringExecution": [term]}


def _scheduling(workload: Workload, options: PodOptions) -> dict[str, Any]:
    affinity: dict[str, Any] = {}
    if (node := gpu_node_affinity(workload, options)) is not None:
        affinity["nodeAffinity"] = node
    if (same_node := _same_node_affinity(workload)) is not None:
        affinity["podAffinity"] = same_node
    scheduling: dict[str, Any] = {"affinity": affinity} if affinity else {}
    if workload.placement.tier.gpus == 0:
        return scheduling
    return {
        "nodeSelector": {options.gpu_node_label: "true"},
        **scheduling,
        "tolerations": [{"key": options.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}],
    }


def cache_volume(workload: Workload) -> dict[str, Any]:
    """The model cache: a claim when the cluster has a persistent cache, else an emptyDir of the tier's size."""
    claim = cache_claim_name(workload)
    if claim is not None:
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": claim}}
    return {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": workload.placement.tier.cache}}


def _pull_secrets(workload: Workload) -> dict[str, Any]:
    names = workload.placement.image_pull_secrets
    return {"imagePullSecrets": [{"name": name} for name in names]} if names else {}


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
            **_pull_secrets(workload),
            "containers": [_container(workload, options)],
            "volumes": [
                cache_volume(workload),
                {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
            ],
        },
    }
