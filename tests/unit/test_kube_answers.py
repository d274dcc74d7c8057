"""Kubernetes failures as the gateway answers them: generic to the caller, detailed in the log."""

from __future__ import annotations

import logging
import re

import pytest

from modelcluster.api.errors import ApiError, Conflict, InputError, NotFound, Unavailable
from modelcluster.gateway.kube_answers import answered, api_error
from modelcluster.kube.client import KubeError

SERVICE_ACCOUNT = "system:serviceaccount:modelcluster-system:modelcluster-gateway"
FORBIDDEN = (
    f'modelclusters.modelcluster.dev is forbidden: User "{SERVICE_ACCOUNT}" cannot create resource '
    '"modelclusters" in API group "modelcluster.dev" in the namespace "acme"'
)
INVALID = (
    'ModelCluster.modelcluster.dev "gpt2-1234abcd" is invalid: spec: Invalid value: "object": '
    "capacity.min must not exceed capacity.max"
)
REQUEST_ID = re.compile(r"\(request ([0-9a-f]{16})\)$")


@pytest.mark.parametrize(
    "error",
    [
        KubeError(403, FORBIDDEN),
        KubeError(401, f"Unauthorized: token of {SERVICE_ACCOUNT} expired"),
        KubeError(500, f"Internal error occurred: etcdserver: request timed out for {SERVICE_ACCOUNT}"),
        KubeError(503, "the server is currently unable to handle the request"),
        KubeError(429, "Too many requests, please try again later."),
        KubeError(0, "ClientConnectorError: Cannot connect to host 10.96.0.1:443"),
    ],
)
@pytest.mark.parametrize("caller_body", [False, True])
def test_failures_answer_a_generic_503_and_log_the_details(
    error: KubeError, caller_body: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelcluster.gateway.kube_answers"):
        answer = api_error(error, "cluster for acme/model", caller_body=caller_body)
    assert isinstance(answer, Unavailable) and answer.status == 503
    match = REQUEST_ID.search(answer.message)
    assert match is not None, answer.message
    assert answer.message.startswith("the Kubernetes API is unavailable (request ")
    for secret in (SERVICE_ACCOUNT, "10.96.0.1", "forbidden", "etcd", error.message):
        assert secret not in answer.message
    (logged,) = [record.getMessage() for record in caplog.records]
    assert match.group(1) in logged and error.message in logged


def test_each_failure_gets_its_own_request_id() -> None:
    first = api_error(KubeError(500, "boom"), "x").message
    second = api_error(KubeError(500, "boom"), "x").message
    assert first != second


def test_the_validation_message_about_the_callers_own_body_is_kept() -> None:
    answer = api_error(KubeError(422, INVALID), "cluster for acme/model", caller_body=True)
    assert isinstance(answer, InputError) and answer.status == 422
    assert answer.message == INVALID


def test_a_validation_failure_of_the_gateways_own_body_is_not_passed_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="modelcluster.gateway.kube_answers"):
        answer = api_error(KubeError(422, INVALID), "cluster gpt2-1234abcd")
    assert type(answer) is ApiError and answer.status == 500
    assert INVALID not in answer.message and REQUEST_ID.search(answer.message)
    assert INVALID in caplog.text


@pytest.mark.parametrize("caller_body", [False, True])
def test_a_bad_request_answers_without_the_apiservers_words(caller_body: bool) -> None:
    answer = api_error(
        KubeError(400, f"the body was refused for {SERVICE_ACCOUNT}"), "cluster", caller_body=caller_body
    )
    assert answer.status == (422 if caller_body else 500)
    assert SERVICE_ACCOUNT not in answer.message and REQUEST_ID.search(answer.message)


@pytest.mark.parametrize("caller_body", [False, True])
def test_missing_and_existing_objects_answer_as_before(caller_body: bool) -> None:
    missing = api_error(KubeError(404, 'modelclusters "x" not found'), "cluster for acme/m", caller_body=caller_body)
    assert isinstance(missing, NotFound) and missing.message == "cluster for acme/m not found"
    taken = api_error(KubeError(409, 'modelclusters "x" already exists'), "cluster for acme/m", caller_body=caller_body)
    assert isinstance(taken, Conflict) and taken.message == "cluster for acme/m already exists"


async def test_answered_raises_the_answer() -> None:
    async def forbidden() -> None:
        raise KubeError(403, FORBIDDEN)

    with pytest.raises(Unavailable) as raised:
        await answered(forbidden(), "cluster for acme/model")
    assert SERVICE_ACCOUNT not in raised.value.message
    assert isinstance(raised.value.__cause__, KubeError)

    async def fine() -> int:
        return 7

    assert await answered(fine(), "x") == 7
