from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelcluster.api.modelcluster import is_model_id
from modelcluster.api.naming import (
    HASH_LENGTH,
    LEGACY_HASH_LENGTH,
    is_dns1035_label,
    is_label_value,
    legacy_object_name,
    model_hash,
    model_label_value,
    object_name,
    object_names,
)

_PART = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,60}[A-Za-z0-9])?", fullmatch=True)
MODEL_IDS = st.builds(lambda org, name: f"{org}/{name}", _PART, _PART).filter(is_model_id)


@given(st.text(min_size=0, max_size=300))
def test_object_name_is_dns1035_for_any_text(model_id: str) -> None:
    name = object_name(model_id)
    assert is_dns1035_label(name)
    assert len(name) <= 63
    assert name.endswith(model_hash(model_id))
    legacy = legacy_object_name(model_id)
    assert is_dns1035_label(legacy) and len(legacy) <= 63
    assert legacy.endswith(model_hash(model_id, LEGACY_HASH_LENGTH))


@given(MODEL_IDS)
def test_object_name_is_deterministic_and_readable(model_id: str) -> None:
    name = object_name(model_id)
    assert name == object_name(model_id)
    assert re.fullmatch(r"[a-z][-a-z0-9]*-[0-9a-f]{16}", name)
    assert re.fullmatch(r"[a-z][-a-z0-9]*-[0-9a-f]{8}", legacy_object_name(model_id))


@given(MODEL_IDS, MODEL_IDS)
def test_distinct_ids_get_distinct_names(first: str, second: str) -> None:
    if first != second:
        assert object_name(first) != object_name(second)


@given(MODEL_IDS)
def test_case_variants_never_collide(model_id: str) -> None:
    for variant in {model_id.lower(), model_id.upper(), model_id.swapcase()} - {model_id}:
        assert object_name(variant) != object_name(model_id)
        assert model_label_value(variant) != model_label_value(model_id)


@given(MODEL_IDS)
def test_label_value_is_valid(model_id: str) -> None:
    assert is_label_value(model_label_value(model_id))


@given(MODEL_IDS, MODEL_IDS)
def test_distinct_ids_get_distinct_label_values(first: str, second: str) -> None:
    if first != second:
        assert model_label_value(first) != model_label_value(second)


@given(st.text(max_size=300))
def test_label_value_is_valid_for_any_text(text: str) -> None:
    assert is_label_value(model_label_value(text))


@pytest.mark.parametrize(
    ("model_id", "prefix"),
    [
        ("openai-community/gpt2", "openai-community-gpt2-"),
        ("Qwen/Qwen2-7B-Instruct", "qwen-qwen2-7b-instruct-"),
        ("Salesforce/SFR-Embedding-2_R", "salesforce-sfr-embedding-2-r-"),
        ("01-ai/Yi-6B", "m-01-ai-yi-6b-"),
    ],
)
def test_examples(model_id: str, prefix: str) -> None:
    assert object_name(model_id).startswith(prefix)


def test_punctuation_variants_do_not_collide() -> None:
    assert object_name("a/b-c") != object_name("a/b_c") != object_name("a/b.c")
    assert object_name("Org/Model") != object_name("org/model")


def test_label_examples() -> None:
    assert model_label_value("openai-community/gpt2") == "openai-community..gpt2"
    assert model_label_value("a.b/c") != model_label_value("a/b.c")
    long_id = "org/" + "x" * 100
    value = model_label_value(long_id)
    assert len(value) <= 63
    assert value.endswith(model_hash(long_id, LEGACY_HASH_LENGTH))  # labels keep the 8 digits (see the module)


def test_names_carry_64_bits_of_hash_and_the_legacy_name_32() -> None:
    assert HASH_LENGTH == 16 and LEGACY_HASH_LENGTH == 8
    digest = "198df6d678d3ef30"  # the SHA-256 of "openai-community/gpt2", first 16 hex digits
    assert model_hash("openai-community/gpt2") == digest
    assert object_name("openai-community/gpt2") == f"openai-community-gpt2-{digest}"
    assert legacy_object_name("openai-community/gpt2") == f"openai-community-gpt2-{digest[:8]}"
    assert object_names("openai-community/gpt2") == (
        object_name("openai-community/gpt2"),
        legacy_object_name("openai-community/gpt2"),
    )


def test_a_long_id_keeps_its_slug_readable_and_both_names_within_63() -> None:
    long_id = "org/" + "x" * 100
    name, legacy = object_names(long_id)
    assert len(name) == 63 and len(legacy) == 63
    assert name == "org-" + "x" * 42 + "-" + model_hash(long_id)
    assert legacy == "org-" + "x" * 50 + "-" + model_hash(long_id, LEGACY_HASH_LENGTH)
