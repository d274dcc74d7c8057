from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelcluster.api import Capacity, ErrorBody, ModelClusterSpec, ModelClusterStatus
from modelcluster.api.modelcluster import is_model_id


def test_spec_defaults() -> None:
    spec = ModelClusterSpec.model_validate({"model": "openai-community/gpt2"})
    assert spec.capacity == Capacity(min=0, desired=1, max=None)
    assert spec.capacity.effective_max == 1
    assert spec.timeout == 300
    assert spec.task is None


@pytest.mark.parametrize(
    "capacity",
    [
        {"min": 2, "desired": 1},
        {"desired": 4, "max": 3},
        {"desired": 0, "max": 0},
        {"desired": 0},
        {"min": -1},
        {"desired": "three"},
    ],
)
def test_capacity_rejected(capacity: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Capacity.model_validate(capacity)


@pytest.mark.parametrize(
    "capacity", [{"min": 0, "desired": 3, "max": 5}, {"desired": 0, "max": 1}, {"min": 1, "desired": 1}]
)
def test_capacity_accepted(capacity: dict[str, object]) -> None:
    Capacity.model_validate(capacity)


@pytest.mark.parametrize(
    "model_id", ["openai-community/gpt2", "Qwen/Qwen2-7B-Instruct", "Salesforce/SFR-Embedding-2_R", "a/b"]
)
def test_model_ids_accepted(model_id: str) -> None:
    assert is_model_id(model_id)
    ModelClusterSpec(model=model_id)


@pytest.mark.parametrize(
    "model_id", ["gpt2", "a/b/c", "/gpt2", "org/", "org/-x", "org/x-", "a..b/c", "org/na me", "ö/x", "a" * 199 + "/b"]
)
def test_model_ids_rejected(model_id: str) -> None:
    assert not is_model_id(model_id)
    with pytest.raises(ValidationError):
        ModelClusterSpec(model=model_id)


def test_negative_timeout_rejected() -> None:
    with pytest.raises(ValidationError):
        ModelClusterSpec.model_validate({"model": "a/b", "timeout": -1})


def test_unknown_spec_fields_are_ignored() -> None:
    spec = ModelClusterSpec.model_validate({"model": "a/b", "futureField": 1})
    assert spec.model == "a/b"


def test_status_round_trips_in_camel_case() -> None:
    status = ModelClusterStatus.model_validate({"status": "running", "readyReplicas": 2, "observedGeneration": 3})
    assert status.to_k8s() == {"status": "running", "readyReplicas": 2, "observedGeneration": 3, "conditions": []}


def test_error_body_shape() -> None:
    assert ErrorBody.failure("nope").model_dump() == {"error": "nope", "output": None}
    assert ErrorBody(output=[1]).model_dump() == {"error": None, "output": [1]}
