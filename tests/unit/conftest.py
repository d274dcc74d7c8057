from __future__ import annotations

from collections.abc import Callable

import pytest

from modelcluster.catalog import Catalog, load_catalog, resolve
from modelcluster.operator.builders.workload import Owner, Workload


@pytest.fixture(scope="session")
def default_catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def make_workload(default_catalog: Catalog) -> Callable[..., Workload]:
    def make(model_id: str = "openai-community/gpt2", task: str | None = None, name: str = "gpt2-abc") -> Workload:
        return Workload(
            owner=Owner(name=name, namespace="tenant", uid="uid-1"),
            placement=resolve(default_catalog, model_id, task),
        )

    return make
