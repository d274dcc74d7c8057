"""Labels and annotations on the children of a ModelCluster."""

from __future__ import annotations

from modelcluster.api.naming import model_label_value

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
MODEL = "modelcluster.dev/model"
TASK = "modelcluster.dev/task"
MODEL_ID_ANNOTATION = "modelcluster.dev/model-id"
#: On a tenant namespace (value: the tenant, which is the namespace's name) and on each key Secret (its tenant).
#: Only a namespace carrying it is a tenant: ``modelcluster keys create`` puts it on the namespaces it makes.
TENANT = "modelcluster.dev/tenant"

APP_NAME = "modelcluster-runtime"
COMPONENT_NAME = "model-server"
MANAGER = "modelcluster-operator"
PART_OF_NAME = "modelcluster"

#: What the operator's watches of Deployments and Pods (and the gateway's of EndpointSlices) select on.
MANAGED_SELECTOR = {MANAGED_BY: MANAGER}


def selector_text(labels: dict[str, str]) -> str:
    """A label selector as the API takes it in ``labelSelector``."""
    return ",".join(f"{key}={value}" for key, value in labels.items())


#: :data:`MANAGED_SELECTOR` as a ``labelSelector``.
MANAGED_SELECTOR_TEXT = selector_text(MANAGED_SELECTOR)


def selector_labels(name: str) -> dict[str, str]:
    """The immutable selector of a cluster's Deployment and Service."""
    return {NAME: APP_NAME, INSTANCE: name}


def selector_string(name: str) -> str:
    """The selector as a string, for ``status.selector`` (scale subresource)."""
    return selector_text(selector_labels(name))


def standard_labels(name: str, model_id: str, task: str) -> dict[str, str]:
    """Every label of a cluster's children and pods."""
    return {
        **selector_labels(name),
        COMPONENT: COMPONENT_NAME,
        MANAGED_BY: MANAGER,
        PART_OF: PART_OF_NAME,
        MODEL: model_label_value(model_id),
        TASK: task,
    }
