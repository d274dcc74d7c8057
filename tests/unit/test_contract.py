"""The request contract in modelcluster.api: parsing, null-as-absent, and the task table."""

from __future__ import annotations

import pytest

from modelcluster.api import InputError, normalize, parse_run_request
from modelcluster.api.tasks import TASKS, task_info, task_names, tasks_of_family
from modelcluster.catalog import load_catalog


def test_null_optional_fields_mean_absent() -> None:
    request = parse_run_request(b'{"text": "hi", "params": null, "stream": null, "json": null}')
    assert request.params == {}
    assert request.stream is False
    assert request.json_output is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "the body is not valid JSON"),
        (b"[1]", "the body must be a JSON object"),
        (b'{"text": 3}', "invalid body: text"),
        (b'{"txt": "a"}', "txt: Extra inputs are not permitted"),
        (b'{"params": []}', "params: Input should be a valid dictionary"),
        (b"\xff", "the body is not valid JSON"),
    ],
)
def test_bad_bodies_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_run_request(raw)
    assert caught.value.status_code == 422


def test_normalize_uses_the_table_inputs() -> None:
    chat = task_info("chat")
    payload = normalize(parse_run_request(b'{"input": "hello"}'), "chat", chat.inputs)
    assert payload.messages is not None and payload.messages[0].content == "hello"
    with pytest.raises(InputError, match="chat does not take `text`"):
        normalize(parse_run_request(b'{"text": "hello"}'), "chat", chat.inputs)


def test_table_is_consistent() -> None:
    assert len(TASKS) == 34
    generators = {name for name, info in TASKS.items() if info.media_generator}
    assert generators == {"text-to-audio", "text-to-speech", "text-to-image", "text-to-video",
                          "unconditional-image-generation"}  # fmt: skip
    assert all(not (info.streamable and info.batchable) for info in TASKS.values())
    with pytest.raises(KeyError, match="known tasks"):
        task_info("text-to-smell")


def test_catalog_families_come_from_the_table() -> None:
    catalog = load_catalog()
    assert catalog.tasks == task_names()
    for name, family in catalog.families.items():
        assert family.tasks == tasks_of_family(name)


def test_the_runtime_loads_no_gateway_operator_or_kubernetes_code() -> None:
    """The model images carry the runtime and the contract only (model-images/Dockerfile drops the rest)."""
    import subprocess
    import sys

    probe = (
        "import sys, modelcluster.runtime.app, modelcluster.runtime.cli, modelcluster.runtime.tasks.generation; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kubernetes_asyncio', 'kopf') "
        "or m.startswith(('modelcluster.gateway', 'modelcluster.operator', 'modelcluster.devcluster'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
