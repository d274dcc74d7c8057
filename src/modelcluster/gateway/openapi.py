"""The OpenAPI 3.1 document of the gateway, built from the contract's pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from modelcluster import __version__
from modelcluster.api import ClusterPhase, RunRequest, task_names
from modelcluster.api.streaming import SSE_CONTENT_TYPE as SSE
from modelcluster.gateway.clusters import ClusterBody
from modelcluster.gateway.openai.protocol import ChatCompletionRequest, CompletionRequest
from modelcluster.gateway.openai.responses import ResponsesRequest

REF = "#/components/schemas/"
JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF + name}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    models: tuple[type[BaseModel], ...] = (
        RunRequest,
        ClusterBody,
        ChatCompletionRequest,
        CompletionRequest,
        ResponsesRequest,
    )
    for model in models:
        schema = model.model_json_schema(ref_template=REF + "{model}", by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    # Open API 3.1 has the schema of an event stream describe each event, as its fields parse.
    schemas["ServerSentEvent"] = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string"},
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }
    schemas["Answer"] = {
        "type": "object",
        "required": ["error", "output"],
        "properties": {"error": {"type": ["string", "null"]}, "output": {}},
    }
    schemas["Error"] = {
        "type": "object",
        "required": ["error", "output"],
        "properties": {"error": {"type": "string"}, "output": {"type": "null"}},
    }
    schemas["Cluster"] = {
        "type": "object",
        "properties": {
            "modelId": {"type": ["string", "null"]},
            "task": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": [phase.value for phase in ClusterPhase]},
            "reason": {"type": ["string", "null"]},
            "message": {"type": ["string", "null"]},
            "capacity": {"type": "object"},
            "timeout": {"type": ["integer", "null"]},
            "replicas": {"type": "integer"},
            "readyReplicas": {"type": "integer"},
            "lastRequestTime": {"type": ["string", "null"]},
            "created": {"type": ["string", "null"]},
        },
    }
    schemas["ClusterAnswer"] = {
        "type": "object",
        "required": ["error", "output", "cluster"],
        "properties": {"error": {"type": "null"}, "output": _ref("Cluster"), "cluster": _ref("Cluster")},
    }
    schemas["OpenAIError"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }
    schemas["OpenAIAnswer"] = {"type": "object"}
    return schemas


def _errors(codes: tuple[int, ...], schema: str = "Error") -> dict[str, Any]:
    text = {
        400: "Bad request",
        401: "Missing or unknown API key",
        402: "The tenant's budget for the period is spent (the message says when it resets)",
        403: "Over one of the tenant's quotas (the message names it and its use)",
        404: "No such model or cluster (or another tenant's)",
        405: "Method not allowed",
        408: "The request body did not arrive within the body deadline",
        409: "The cluster already exists",
        413: "The body is larger than the limit, or its structure passes one (depth, items, string, params)",
        422: "The body does not fit the route or the model's task",
        429: "Over the key's concurrency limit, or too many requests (or bytes) waiting for one model",
        500: "Internal error (the answer names a request id for the logs)",
        502: "A model pod failed to answer, or its answer is larger than the limit",
        503: "No ready model pod within the hold deadline (see Retry-After), or the Kubernetes API is unavailable",
        504: "A model pod did not answer in time",
    }
    return {str(code): {"description": text[code], "content": {JSON: {"schema": _ref(schema)}}} for code in codes}


_INFERENCE_ERRORS = (400, 401, 402, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504)
_CRUD_ERRORS = (401, 404, 408, 413, 422, 429, 500, 503)
_MODEL_PARAMS = [
    {"name": "org", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
]
_SECURITY: list[dict[str, list[str]]] = [{"key": []}]


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    body: str | None = None,
    error_schema: str = "Error",
    **extra: Any,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": _SECURITY,
        "responses": {**ok, **_errors(errors, error_schema)},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    operation.update(extra)
    return operation


def _answer(schema: str = "Answer", code: str = "200", description: str = "Success") -> dict[str, Any]:
    return {code: {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


@cache
def openapi_document() -> dict[str, Any]:
    streamed = {
        "200": {
            "description": "The output; with `stream: true`, text chunks (or SSE with `Accept: text/event-stream`)",
            "content": {
                JSON: {"schema": _ref("Answer")},
                "text/plain": {"schema": {"type": "string"}},
                SSE: {"schema": _ref("ServerSentEvent")},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }
    openai_ok = {
        "200": {
            "description": "An OpenAI completion, or its SSE stream ending with `data: [DONE]`",
            "content": {JSON: {"schema": _ref("OpenAIAnswer")}, SSE: {"schema": _ref("ServerSentEvent")}},
        }
    }
    # Named events (`event: response.created`, ...), each with its JSON `data`, ending with `response.completed`.
    responses_ok = {
        "200": {
            "description": "An OpenAI response object, or its SSE stream of named events ending with "
            "`response.completed` (or `response.failed`)",
            "content": {
                JSON: {"schema": _ref("OpenAIAnswer")},
                SSE: {"schema": _ref("ServerSentEvent")},
            },
        }
    }
    openai_errors = (400, 401, 402, 403, 404, 408, 413, 429, 500, 502, 503, 504)
    model_path = {
        "parameters": _MODEL_PARAMS,
        "post": _op(
            "Run the model (creates and wakes its cluster as needed); a closed model of a provider "
            "(openai, anthropic, google, cohere, mistral) is passed through with the `Provider-Key` header",
            streamed,
            _INFERENCE_ERRORS,
            "RunRequest",
        ),
        "put": _op(
            "Create the model's cluster",
            _answer("ClusterAnswer", "201", "Created"),
            (*_CRUD_ERRORS, 409),
            "ClusterBody",
        ),
        "get": _op("Read the model's cluster", _answer("ClusterAnswer"), _CRUD_ERRORS),
        "patch": _op("Change capacity or timeout", _answer("ClusterAnswer"), _CRUD_ERRORS, "ClusterBody"),
        "delete": _op("Delete the model's cluster", _answer(), _CRUD_ERRORS),
    }
    task_param = {"name": "task", "in": "query", "required": False, "schema": {"type": "string", "enum": task_names()}}
    model_param = {"name": "modelId", "in": "query", "required": False, "schema": {"type": "string"}}
    usage_params = [
        {"name": "start", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
        {"name": "end", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
        {"name": "groupBy", "in": "query", "required": False, "schema": {"enum": ["model", "key", "day"]}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ModelCluster gateway",
            "version": __version__,
            "description": "The Bytez model API over ModelClusters, with OpenAI-compatible routes.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "key": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Key <key>` or the bare key",
                }
            },
        },
        "paths": {
            "/models/v2/list/models": {
                "get": _op("Models and their tasks", _answer(), (401, 429, 500), parameters=[task_param, model_param])
            },
            "/models/v2/list/tasks": {"get": _op("Tasks", _answer(), (401, 429, 500))},
            "/models/v2/list/clusters": {"get": _op("The caller's clusters", _answer(), (401, 429, 500))},
            "/models/v2/usage": {
                "get": _op(
                    "The caller's tenant's usage (requests, inference seconds, tokens, cost), grouped",
                    _answer(),
                    (401, 422, 429, 500, 503),
                    parameters=usage_params,
                )
            },
            "/models/v2/openai/v1/chat/completions": {
                "post": _op("OpenAI chat completions", openai_ok, openai_errors, "ChatCompletionRequest", "OpenAIError")
            },
            "/models/v2/openai/v1/completions": {
                "post": _op("OpenAI completions", openai_ok, openai_errors, "CompletionRequest", "OpenAIError")
            },
            "/models/v2/openai/v1/responses": {
                "post": _op(
                    "OpenAI responses (chat models)", responses_ok, openai_errors, "ResponsesRequest", "OpenAIError"
                )
            },
            "/models/v2/openai/v1/models": {
                "get": _op("OpenAI model list", _answer("OpenAIAnswer"), (401, 429, 500), error_schema="OpenAIError")
            },
            "/models/v2/{org}/{name}": model_path,
            "/health": {"get": {"summary": "Liveness", "responses": _answer()}},
            "/ready": {"get": {"summary": "Readiness", "responses": {**_answer(), **_errors((503,))}}},
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}
                    },
                }
            },
        },
    }
