"""Pricing, budget periods and usage queries: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelcluster.api.errors import InputError
from modelcluster.api.metering import MeterReading, parse_seconds
from modelcluster.catalog import load_catalog
from modelcluster.catalog.loader import default_document, merge
from modelcluster.catalog.pricing import cost, meter_of, reading
from modelcluster.catalog.schema import Catalog
from modelcluster.gateway.metering.budgets import Budget, budget_message, period_bounds
from modelcluster.gateway.metering.usage import usage_query

LANGUAGE = {
    "micro": 0.0000872083, "xs": 0.0001475035, "sm": 0.0006478333, "md": 0.0008433876,
    "lg": 0.0012956667, "xl": 0.0024468774, "xxl": 0.0047912685, "super": 0.0059890856,
}  # fmt: skip
OTHER = {
    "micro": 0.00053440, "xs": 0.00066800, "sm": 0.00427520, "md": 0.00480960,
    "lg": 0.00855040, "xl": 0.01603200, "xxl": 0.02458240, "super": 0.02992640,
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize("tier", sorted(LANGUAGE))
def test_the_default_catalog_holds_the_two_price_tables(catalog: Catalog, tier: str) -> None:
    assert catalog.prices.language[tier] == LANGUAGE[tier]
    assert catalog.prices.other[tier] == OTHER[tier]


@pytest.mark.parametrize(
    ("model", "task", "meter", "price"),
    [
        ("Qwen/Qwen3-4B", "chat", "micro-llm", LANGUAGE["micro"]),  # 4.02e9 params x 2.5 bytes: 10 GB
        ("Qwen/Qwen2-7B-Instruct", "chat", "xs-llm", LANGUAGE["xs"]),  # 19 GB
        ("openai-community/gpt2", "text-generation", "micro-llm", LANGUAGE["micro"]),
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-similarity", "micro", OTHER["micro"]),
        ("dreamlike-art/dreamlike-photoreal-2.0", "text-to-image", "xs", OTHER["xs"]),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", "image-text-to-text", "sm-llm", LANGUAGE["sm"]),
        ("someone/unlisted", "text-classification", "micro", OTHER["micro"]),
    ],
)
def test_meter_by_tier_and_kind(catalog: Catalog, model: str, task: str, meter: str, price: float) -> None:
    tier = catalog.tier_of(catalog.model(model)).name
    found = meter_of(catalog, model, task)
    assert found.name == meter and meter.startswith(tier)
    assert found.price == price


def test_prices_are_overridden_per_tier_and_per_model() -> None:
    overlay = {
        "prices": {"other": {"micro": 0.001}},
        "models": [{"id": "acme/priced", "task": "chat", "params": 1000, "meterPrice": 0.5}],
    }
    catalog = Catalog.model_validate(merge(default_document(), overlay))
    assert meter_of(catalog, "sentence-transformers/all-MiniLM-L6-v2", "sentence-similarity").price == 0.001
    assert catalog.prices.other["xs"] == OTHER["xs"]  # the rest of the table stays
    assert catalog.prices.language["micro"] == LANGUAGE["micro"]
    assert meter_of(catalog, "acme/priced", "chat").price == 0.5
    assert meter_of(catalog, "ACME/PRICED", "chat").price == 0.5


@pytest.mark.parametrize(
    "overlay",
    [{"prices": {"other": {"nope": 1.0}}}, {"prices": {"language": {"micro": -1}}}, {"prices": {"other": {"xs": "x"}}}],
)
def test_bad_prices_are_refused(overlay: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="prices"):
        Catalog.model_validate(merge(default_document(), overlay))


@pytest.mark.parametrize(
    ("price", "seconds", "expected"), [(0.0005344, 2.0, 0.0010688), (0.0000872083, 0.0, 0.0), (0.0, 12.5, 0.0)]
)
def test_cost_is_price_times_time(price: float, seconds: float, expected: float) -> None:
    assert cost(price, seconds) == pytest.approx(expected, rel=1e-12)


def test_a_reading_renders_figures_that_read_back_exactly(catalog: Catalog) -> None:
    figures = reading(meter_of(catalog, "Qwen/Qwen3-4B", "chat"), 0.123456789).headers()
    price, seconds, charged = (
        float(figures[h]) for h in ("X-Inference-Meter-Price", "X-Inference-Time", "X-Inference-Cost")
    )
    assert charged == price * seconds
    assert MeterReading("m", 1.0, 2.0, 2.0).usage_fields() == {
        "meter": "m", "meter_price": 1.0, "inference_time": 2.0, "inference_cost": 2.0
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.25", 0.25), (1, 1.0), ("-1", None), ("nan", None), ("inf", None), ("x", None), (True, None)],
)
def test_seconds_from_a_peer(value: object, expected: float | None) -> None:
    assert parse_seconds(value) == expected


NOW = datetime(2026, 12, 31, 15, 30, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("day", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("week", datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        ("month", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_budget_periods(period: str, start: datetime, end: datetime) -> None:
    assert period_bounds(period, NOW) == (start, end)  # type: ignore[arg-type]


def test_the_402_message_names_the_budget_and_its_reset() -> None:
    message = budget_message("acme", Budget(amount=10, period="month"), 10.5, datetime(2027, 1, 1, tzinfo=UTC))
    assert "$10 per month" in message and "acme" in message and "resets at 2027-01-01T00:00:00Z" in message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start: 'yesterday' is not a date"),
        ({"end": "2026-13-01"}, "end: '2026-13-01' is not a date"),
        ({"start": "2026-12-02", "end": "2026-12-01"}, "start must be before end"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "at most 366 days"),
        ({"groupBy": "tenant"}, "groupBy must be one of model, key, day"),
        ({"tenant": "other"}, "unknown query parameters: tenant"),
        # Dates a range cannot be taken from: the default start 30 days before, or an offset past year 1.
        ({"end": "0001-01-25T01:00:01Z", "groupBy": "day"}, "end: .* is not between 1970-01-01 and 9998-12-31"),
        ({"start": "0001-01-01T00:00:00+05:00"}, "start: .* is not between"),
        ({"end": "9999-12-31T23:00:00-05:00"}, "end: .* is not between"),
        ({"start": "1969-12-31"}, "start: '1969-12-31' is not between"),
    ],
)
def test_bad_usage_queries_are_refused(params: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        usage_query(params, NOW)


def test_usage_query_defaults_and_dates() -> None:
    query = usage_query({}, NOW)
    assert (query.end - query.start).days == 30 and query.group_by == "model"
    query = usage_query({"start": "2026-12-01", "end": "2026-12-02T00:00:00+02:00", "groupBy": "day"}, NOW)
    assert query.start == datetime(2026, 12, 1, tzinfo=UTC) and query.end == datetime(2026, 12, 1, 22, tzinfo=UTC)


def test_budgets_come_from_the_tenants_then_the_settings() -> None:
    from modelcluster.gateway.metering.budgets import StaticBudgets, TenantBudgets
    from modelcluster.gateway.tenants import TenantTable

    table = TenantTable()
    table.reset(
        [
            {
                "metadata": {"name": "acme"},
                "spec": {"namespace": "acme-ns", "budget": {"amount": 12.5, "period": "week"}},
            },
            {"metadata": {"name": "free"}, "spec": {}},
        ]
    )
    source = TenantBudgets(table, StaticBudgets({"legacy": Budget(amount=1, period="day")}))
    assert source.budget_of("acme-ns") == Budget(amount=12.5, period="week")
    assert source.budget_of("free") is None
    assert source.budget_of("legacy") == Budget(amount=1, period="day")
    assert sorted(source.budgeted()) == ["acme-ns", "legacy"]


def test_a_closed_model_records_its_tokens_at_no_cost() -> None:
    from datetime import datetime

    from modelcluster.gateway.metering.http import provider_usage, reading_of
    from modelcluster.gateway.metering.records import UsageDraft

    draft = UsageDraft("r1", datetime.now(UTC), 0.0)
    draft.inference_seconds = 1.5
    provider_usage(draft, "openai/gpt-4o", "chat", "openai", 12, 30)
    record = draft.record("acme", "k1", 200, 1.6)
    assert (record.cluster, record.meter, record.cost, record.tokens_in, record.tokens_out) == (
        "openai",
        "none",
        0.0,
        12,
        30,
    )
    assert reading_of(draft).cost == 0.0


def test_a_records_values_follow_the_ledgers_columns() -> None:
    from modelcluster.gateway.metering.ledger import ROW_COLUMNS
    from modelcluster.gateway.metering.records import UsageRecord

    record = UsageRecord("r", "acme", "k", "org/m", task="chat", cluster="acme/c", meter="xs", status=200, cost=1.5)
    assert dict(zip(ROW_COLUMNS, record.values(), strict=True)) == record.row()
