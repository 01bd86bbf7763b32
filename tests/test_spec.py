"""The metric spec loader: the default spec, and clear errors for invalid ones."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tally.core.settings import DEFAULT_SPEC_PATH
from tally.core.spec import Kind, Merge, SpecError, load_spec, parse_spec
from tests.support.default_spec import DEFAULT_NAMES


def default_document() -> dict:
    return yaml.safe_load(DEFAULT_SPEC_PATH.read_text())


def test_default_spec_has_the_public_metrics():
    spec = load_spec(DEFAULT_SPEC_PATH)
    assert [m.name for m in spec.metrics] == DEFAULT_NAMES
    assert spec.get("revenue").kind is Kind.SUM
    assert spec.get("revenue").filter == (("event_type", ("purchase",)),)
    assert spec.get("events").dimensions == ("event_type", "country", "platform")
    assert spec.get("sessions").dimensions == ("platform",)
    aov = spec.get("avg_order_value")
    assert (aov.kind, aov.numerator, aov.denominator) == (Kind.RATIO, "revenue", "orders")
    ratios = ("avg_order_value", "conversion_rate", "stickiness")
    assert [m.name for m in spec.stored] == [n for n in DEFAULT_NAMES if n not in ratios]


def test_ratio_sides_can_carry_their_own_window():
    sticky = load_spec(DEFAULT_SPEC_PATH).get("stickiness")
    assert (sticky.numerator, sticky.numerator_window_days) == ("active_users", None)
    assert (sticky.denominator, sticky.denominator_window_days) == ("active_users", 30)
    assert sticky.grains == ("day",) and sticky.max_window_days == 0
    assert load_spec(DEFAULT_SPEC_PATH).get("revenue").max_window_days == 90


def test_slice_dimension_sets_cover_every_combination():
    sets = load_spec(DEFAULT_SPEC_PATH).get("revenue").slice_dimension_sets()
    assert sets == [(), ("country",), ("platform",), ("country", "platform")]


def _mutate(metric: str, **changes) -> dict:
    document = copy.deepcopy(default_document())
    target = next(m for m in document["metrics"] if m["name"] == metric)
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return document


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (_mutate("revenue", kind="median"), "metric 'revenue': field 'kind'"),
        (_mutate("revenue", field="price"), "metric 'revenue': field 'field'"),
        (
            _mutate("orders", dimensions=["country", "city"]),
            "metric 'orders': field 'dimensions': unknown dimension 'city'",
        ),
        (_mutate("orders", filter={"city": "Paris"}), "metric 'orders': field 'filter'"),
        (_mutate("orders", description=None), "metric 'orders': field 'description'"),
        (_mutate("orders", colour="red"), "metric 'orders': field 'colour': unknown field"),
        (
            _mutate("avg_order_value", denominator="refunds"),
            "metric 'avg_order_value': field 'denominator': no metric named 'refunds'",
        ),
        (_mutate("sessions", grains=["minute"]), "metric 'sessions': field 'grains'"),
        (_mutate("signups", name="Sign Ups"), "field 'name'"),
        (_mutate("events", field="amount"), "metric 'events': field 'field': not allowed"),
        (
            _mutate("stickiness", denominator={"metric": "active_users", "window_days": 91}),
            "metric 'stickiness': field 'denominator': window_days must be an integer from 1 to 90",
        ),
        (_mutate("stickiness", max_window_days=7), "metric 'stickiness': field 'max_window_days': must be 0"),
        (_mutate("revenue", max_window_days=120), "metric 'revenue': field 'max_window_days'"),
        # The sketch-native kinds (issue 16).
        (_mutate("order_value_p95", q=1), "metric 'order_value_p95': field 'q': must be a number strictly between"),
        (_mutate("order_value_p95", q=0), "metric 'order_value_p95': field 'q'"),
        (_mutate("order_value_p95", q="high"), "metric 'order_value_p95': field 'q'"),
        (_mutate("order_value_p95", q=True), "metric 'order_value_p95': field 'q'"),
        (_mutate("order_value_p95", kll_k=4), "metric 'order_value_p95': field 'kll_k': must be an integer from 8"),
        (_mutate("order_value_p95", field=None), "metric 'order_value_p95': field 'field': required for kind quantile"),
        (_mutate("order_value_p95", field="country"), "field 'field': a quantile needs a numeric field"),
        (_mutate("max_order", field="user_id"), "metric 'max_order': field 'field': a max needs a numeric field"),
        (_mutate("max_order", q=0.5), "metric 'max_order': field 'q': only for kind quantile"),
        (_mutate("revenue", sketch="theta"), "metric 'revenue': field 'sketch': only for kind count_distinct"),
        (_mutate("active_users", sketch="cpc"), "metric 'active_users': field 'sketch': must be one of hll, theta"),
        (_mutate("active_users", lg_nom_entries=10), "field 'lg_nom_entries': only with sketch: theta"),
        (_mutate("new_users", lg_nom_entries=30), "metric 'new_users': field 'lg_nom_entries': must be an integer"),
        (_mutate("orders", kll_k=200), "metric 'orders': field 'kll_k': only for kind quantile"),
    ],
)
def test_invalid_spec_names_metric_and_field(document, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(document, source="metrics.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("metrics.yaml")


def test_the_new_kinds_parse_with_their_defaults_and_fingerprints_of_their_own():
    spec = load_spec(DEFAULT_SPEC_PATH)
    p95, top, new = spec.get("order_value_p95"), spec.get("max_order"), spec.get("new_users")
    assert (p95.kind, p95.q, p95.kll_k, p95.merge) == (Kind.QUANTILE, 0.95, 200, Merge.KLL)
    assert (top.kind, top.merge, top.has_sketch) == (Kind.MAX, Merge.MAX, False)
    assert (new.sketch, new.lg_nom_entries, new.merge, new.is_theta) == ("theta", 12, Merge.THETA, True)
    assert spec.get("active_users").merge is Merge.HLL
    # What decides the stored numbers changes the fingerprint; the default q does not.
    base = parse_spec(default_document()).fingerprints
    assert parse_spec(_mutate("order_value_p95", kll_k=400)).fingerprints["order_value_p95"] != base["order_value_p95"]
    assert parse_spec(_mutate("order_value_p95", q=0.5)).fingerprints["order_value_p95"] == base["order_value_p95"]
    assert parse_spec(_mutate("new_users", lg_nom_entries=14)).fingerprints["new_users"] != base["new_users"]
    hll_twin = parse_spec(_mutate("new_users", sketch=None)).fingerprints["new_users"]
    assert hll_twin != base["new_users"]  # another sketch is another definition
    # Ratios may take the new kinds as parts.
    document = default_document()
    document["metrics"].append(
        {
            "name": "peak_to_p95",
            "description": "x",
            "unit": "x",
            "kind": "ratio",
            "numerator": "max_order",
            "denominator": "order_value_p95",
            "dimensions": ["country"],
        }
    )
    assert parse_spec(document).get("peak_to_p95").is_ratio


def test_ratio_needs_its_dimensions_on_both_parts():
    document = _mutate("conversion_rate", dimensions=["country", "platform", "event_type"])
    with pytest.raises(SpecError, match=r"conversion_rate.*'numerator'.*lacks dimensions"):
        parse_spec(document)


def test_duplicate_metric_name_is_rejected():
    document = default_document()
    document["metrics"].append(copy.deepcopy(document["metrics"][0]))
    with pytest.raises(SpecError, match="metric 'events': field 'name': defined more than once"):
        parse_spec(document)


def test_unreadable_spec_file_names_the_file(tmp_path: Path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("metrics: [ {name: x")
    with pytest.raises(SpecError, match=r"broken\.yaml: not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match=r"missing\.yaml: spec file not found"):
        load_spec(tmp_path / "missing.yaml")


def test_the_default_spec_declares_the_sample_table_as_source_events():
    spec = load_spec(DEFAULT_SPEC_PATH)
    (events,) = spec.sources
    assert (events.name, events.path, events.id) == ("events", "raw/events/dt={YYYY}-{MM}-{DD}/hour={HH}", "event_id")
    assert events.reasons == (
        "missing_event_id",
        "missing_user_id",
        "missing_event_type",
        "missing_event_time",
        "event_time_outside_hour",
        "invalid_purchase_amount",
    )
    assert {m.source for m in spec.stored} == {"events"}
    assert spec.cards == ("revenue", "orders", "avg_order_value", "active_users", "conversion_rate")


def test_a_metrics_fingerprint_changes_with_its_definition_only():
    base = parse_spec(default_document())
    changed = parse_spec(_mutate("orders", filter={"event_type": ["purchase", "signup"]}))
    moved = copy.deepcopy(default_document())
    moved["sources"]["events"]["path"] = "elsewhere/{YYYY}/{MM}/{DD}/{HH}"
    relocated = parse_spec(moved)
    assert {m for m in base.fingerprints if base.fingerprints[m] != changed.fingerprints[m]} == {"orders"}
    assert all(base.fingerprints[m] != relocated.fingerprints[m] for m in base.fingerprints)


def test_partition_layouts_are_read_by_discovery_others_hour_by_hour():
    from jobs.partitions import partition_layout

    assert partition_layout("raw/events/dt={YYYY}-{MM}-{DD}/hour={HH}").depth == 2
    rides = partition_layout("lake/rides/year={YYYY}/month={MM}/day={DD}/hour={HH}")
    assert rides.keys == (("year", "YYYY"), ("month", "MM"), ("day", "DD"), ("hour", "HH"))
    assert partition_layout("/mnt/web/{YYYY}{MM}{DD}/{HH}") is None
    assert partition_layout("raw/{YYYY}/{MM}/{DD}/{HH}") is None
    assert partition_layout("raw/dt={YYYY}-{MM}-{DD}/x/hour={HH}") is None


def test_several_problems_are_reported_together_one_line_each():
    document = _mutate("revenue", kind="median")
    target = next(m for m in document["metrics"] if m["name"] == "sessions")
    target["dimensions"] = ["device"]
    with pytest.raises(SpecError) as info:
        parse_spec(document, source="metrics.yaml")
    assert len(info.value.problems) == 2
    assert "metric 'revenue': field 'kind'" in info.value.problems[0]
    assert "metric 'sessions': field 'dimensions'" in info.value.problems[1]
    # The ratio that reads the broken metric is not reported again.
    assert not any("avg_order_value" in p for p in info.value.problems)
