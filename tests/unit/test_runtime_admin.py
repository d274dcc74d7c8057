"""The standby's admin call: who may make it, what it says, and the settings of the runtime a claim makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelcluster.api.errors import InputError, Unauthorized
from modelcluster.runtime.admin import AdminRefused, authorized, parse_load_order
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.standby import claimed_settings, family_libraries

TOKEN = "s3cret-token"


def order(**fields: str) -> bytes:
    return json.dumps(
        {"model_id": "sentence-transformers/all-MiniLM-L6-v2", "task": "feature-extraction", **fields}
    ).encode()


def test_only_the_bearer_token_is_let_in() -> None:
    authorized(f"Bearer {TOKEN}", TOKEN)
    authorized(f"bearer {TOKEN}", TOKEN)
    for header in (None, "", TOKEN, f"Bearer {TOKEN}x", "Bearer ", f"Key {TOKEN}"):
        with pytest.raises(Unauthorized):
            authorized(header, TOKEN)


def test_without_a_token_every_call_is_refused() -> None:
    with pytest.raises(AdminRefused) as refused:
        authorized(f"Bearer {TOKEN}", None)
    assert refused.value.status == 403


def test_a_load_order_names_a_model_and_a_task_of_the_family() -> None:
    parsed = parse_load_order(order(), "text")
    assert (parsed.model_id, parsed.task) == ("sentence-transformers/all-MiniLM-L6-v2", "feature-extraction")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{", "invalid load order"),
        (b"[]", "invalid load order"),
        (json.dumps({"model_id": "a/b"}).encode(), "task"),
        (order(extra="x"), "extra"),
        (order(model_id=""), "model_id"),
        (order(task="coffee"), "unknown task"),
        (order(task="chat"), "llm family"),
    ],
)
def test_a_bad_order_is_a_422_naming_what_is_wrong(raw: bytes, named: str) -> None:
    with pytest.raises(InputError, match=named):
        parse_load_order(raw, "text")


def test_a_runtime_needs_a_model_unless_it_is_a_standby(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL_ID", "TASK", "STANDBY_FAMILY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match="MODEL_ID and TASK are required"):
        RuntimeSettings()
    assert RuntimeSettings(standby_family="text").model_id == ""


def test_the_token_file_wins_over_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert RuntimeSettings(standby_family="text", admin_token="from-env").admin_secret() == "from-env"
    assert RuntimeSettings(standby_family="text", admin_token="x", admin_token_file=path).admin_secret() == "from-file"
    assert RuntimeSettings(standby_family="text").admin_secret() is None


def test_a_claim_keeps_the_standbys_settings_and_serves_the_model() -> None:
    base = RuntimeSettings(standby_family="text", max_queue=7, admin_token="t", device="cpu")
    claimed = claimed_settings(base, "sentence-transformers/all-MiniLM-L6-v2", "feature-extraction")
    assert (claimed.model_id, claimed.task, claimed.standby_family) == (
        "sentence-transformers/all-MiniLM-L6-v2",
        "feature-extraction",
        None,
    )
    assert (claimed.max_queue, claimed.device) == (7, "cpu")


def test_a_family_imports_what_each_of_its_tasks_needs() -> None:
    libraries = family_libraries("text")
    assert {"torch", "transformers", "sentence_transformers"} <= set(libraries)
    assert libraries[0] == "torch"
    # and the modules transformers imports only when a model is first built, after the libraries
    assert "transformers.modeling_utils" in libraries
    assert libraries.index("transformers.modeling_utils") > libraries.index("sentence_transformers")
    assert family_libraries("diffusion") == ("torch", "diffusers")
