"""Which body fields each task reads, and turning a ``RunRequest`` into them: pure functions, no I/O.

The gateway and the runtime both call :func:`normalize`, so a body the runtime would reject for its
task is rejected by the gateway with the same message, before any cluster is created or woken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelcluster.api.errors import InputError
from modelcluster.api.inference import INPUT_FIELDS, Message, RunRequest, summarize_validation_error

MEDIA_FIELDS = frozenset({"url", "base64"})


@dataclass(frozen=True)
class InputSpec:
    """Which body fields a task reads: every group in ``required`` needs one of its fields."""

    required: tuple[frozenset[str], ...] = ()
    optional: frozenset[str] = frozenset()
    media: str | None = None  # "image", "audio" or "video" when url/base64 carry media

    @property
    def accepted(self) -> frozenset[str]:
        names: set[str] = set(self.optional)
        for group in self.required:
            names |= group
        return frozenset(names)


TEXT = InputSpec(required=(frozenset({"text"}),))
MESSAGES = InputSpec(required=(frozenset({"messages"}),))
TEXT_LABELS = InputSpec(required=(frozenset({"text"}), frozenset({"candidate_labels"})))
QUESTION_CONTEXT = InputSpec(required=(frozenset({"question"}), frozenset({"context"})))
NOTHING = InputSpec()


def media_spec(kind: str, *extra: str, optional: frozenset[str] = frozenset()) -> InputSpec:
    groups = (MEDIA_FIELDS, *(frozenset({name}) for name in extra))
    return InputSpec(required=groups, optional=optional, media=kind)


@dataclass(frozen=True)
class Payload:
    """The task's inputs after normalization; media is still a reference (url or base64)."""

    text: str | list[str] | None = None
    messages: list[Message] | None = None
    url: str | None = None
    base64: str | None = None
    question: str | None = None
    context: str | None = None
    candidate_labels: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def present(self) -> set[str]:
        return {name for name in INPUT_FIELDS if getattr(self, name) is not None}


def _looks_like_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _fields_from_input(value: object, spec: InputSpec) -> dict[str, Any]:
    """Map the SDK's ``input`` onto body fields the task reads."""
    accepted = spec.accepted
    if isinstance(value, str):
        if spec.media is not None:
            return {"url": value} if _looks_like_url(value) else {"base64": value}
        if "text" in accepted:
            return {"text": value}
        if "messages" in accepted:
            return {"messages": [Message(role="user", content=value)]}
        raise InputError(f"a string input is not accepted here; send {_describe(spec)}")
    if isinstance(value, list):
        if value and all(isinstance(item, Message) for item in value):
            return {"messages": value}
        if all(isinstance(item, str) for item in value):
            return {"text": value}
        raise InputError("input must be a string, a list of messages or an object")
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(INPUT_FIELDS))
        if unknown:
            raise InputError(f"unknown input field(s): {', '.join(unknown)}")
        try:
            parsed = RunRequest.model_validate(value)
        except ValidationError as exc:
            raise InputError(f"invalid input: {summarize_validation_error(exc)}") from exc
        return {name: getattr(parsed, name) for name in value}
    raise InputError("input must be a string, a list of messages or an object")


def _describe(spec: InputSpec) -> str:
    if not spec.required:
        return "no input fields"
    return " and ".join(" or ".join(f"`{name}`" for name in sorted(group)) for group in spec.required)


def normalize(request: RunRequest, task: str, spec: InputSpec) -> Payload:
    """Resolve ``input``, then check that exactly the fields the task reads are present."""
    fields: dict[str, Any] = {
        name: getattr(request, name) for name in INPUT_FIELDS if getattr(request, name) is not None
    }
    if request.input is not None:
        from_input = _fields_from_input(request.input, spec)
        clash = sorted(set(from_input) & set(fields))
        if clash:
            raise InputError(f"`input` and `{clash[0]}` both give {clash[0]}; send one of them")
        fields.update(from_input)
    unused = sorted(set(fields) - spec.accepted)
    if unused:
        raise InputError(f"{task} does not take `{unused[0]}`; it takes {_describe(spec)}")
    for group in spec.required:
        given = group & set(fields)
        if not given:
            raise InputError(f"{task} needs {_describe(spec)}; missing {' or '.join(f'`{n}`' for n in sorted(group))}")
        if len(given) > 1:
            raise InputError(f"send only one of {', '.join(f'`{n}`' for n in sorted(given))}")
    text = fields.get("text")
    if isinstance(text, list) and not text:
        raise InputError("`text` is an empty list")
    labels = fields.get("candidate_labels")
    if labels is not None and not labels:
        raise InputError("`candidate_labels` is empty")
    if fields.get("messages") == []:
        raise InputError("`messages` is empty")
    return Payload(**fields)
