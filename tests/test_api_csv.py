"""``GET /v1/metrics/{name}`` as CSV (``format=csv`` or ``Accept: text/csv``) from a live `tally serve`.

The CSV is checked cell for cell against the JSON answer to the same query; the
ETag, 304 and response-cache rules are checked across the two representations,
since one URL (negotiated by Accept) now has both.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dashboard_api.csv_format import negotiate, series_csv
from tests.support.live_api import LiveApi, live_api

DAYS = {"start": "2026-10-30", "end": "2026-11-03", "grain": "day", "tz": "America/New_York"}
QUERIES: list[tuple[str, dict[str, str]]] = [
    ("events", {"start": "2026-11-03T21:00:00Z", "end": "2026-11-04T02:00:00Z"}),  # nulls past the data
    ("events", {**DAYS, "group_by": "country", "limit": "2"}),
    ("revenue", {**DAYS, "platform": "web", "group_by": "country"}),
    ("avg_order_value", {**DAYS, "country": "US"}),
    ("active_users", {"start": "2026-10-30T00:00:00Z", "end": "2026-10-30T04:00:00Z", "bounds": "true"}),
]
CSV_TYPE = "text/csv; charset=utf-8"


@pytest.fixture(scope="module")
def api(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with live_api(redis_server, tmp_path_factory.mktemp("csv")) as served:
        yield served


@pytest.fixture
def http(api: LiveApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url) as client:
        yield client


def json_cell(value: Any) -> str:
    """A JSON scalar as the CSV should write it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def expected_rows(document: dict[str, Any], labels: list[str], bounds: bool) -> list[list[str]]:
    extra = ["lower", "upper"] if bounds else []
    header = ["ts", *labels, "value", "complete", "revised", *extra]
    rows = [
        [p["ts"], *(s["labels"][name] for name in labels), *(json_cell(p[k]) for k in header[1 + len(labels) :])]
        for s in document["series"]
        for p in s["points"]
    ]
    return [header, *rows]


@pytest.mark.parametrize(("metric", "params"), QUERIES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(QUERIES)])
def test_the_csv_is_the_json_cell_for_cell(http: httpx.Client, metric: str, params: dict[str, str]) -> None:
    document = http.get(f"/v1/metrics/{metric}", params=params).json()
    response = http.get(f"/v1/metrics/{metric}", params={**params, "format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"] == CSV_TYPE
    assert response.text.endswith("\r\n")
    labels = [k for k in params if k not in ("start", "end", "grain", "tz", "group_by", "limit", "bounds")]
    labels += [params["group_by"]] if "group_by" in params else []
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == expected_rows(document, labels, params.get("bounds") == "true")
    assert len(rows) == 1 + sum(len(s["points"]) for s in document["series"]) > 1


def test_accept_negotiates_and_format_wins(http: httpx.Client) -> None:
    path, params = "/v1/metrics/events", {**DAYS, "group_by": "platform"}
    by_accept = http.get(path, params=params, headers={"Accept": "text/csv"})
    by_param = http.get(path, params={**params, "format": "csv"})
    assert by_accept.headers["content-type"] == CSV_TYPE and by_accept.text == by_param.text
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for accept in (browser, "*/*", "application/json, text/csv;q=0.5", ""):
        assert http.get(path, params=params, headers={"Accept": accept}).headers["content-type"] == "application/json"
    forced = http.get(path, params={**params, "format": "json"}, headers={"Accept": "text/csv"})
    assert forced.headers["content-type"] == "application/json" and forced.json()["series"]
    assert by_accept.headers["vary"] == forced.headers["vary"] == "Accept"


def test_each_representation_has_its_own_etag_and_304(http: httpx.Client) -> None:
    path, params = "/v1/metrics/signups", {**DAYS, "group_by": "country"}
    as_json = http.get(path, params=params)
    as_csv = http.get(path, params=params, headers={"Accept": "text/csv"})
    assert as_json.headers["etag"] != as_csv.headers["etag"]
    again = http.get(path, params=params, headers={"Accept": "text/csv", "If-None-Match": as_csv.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == as_csv.headers["etag"] and not again.content
    # The JSON's ETag does not validate the CSV (nor the other way): a 200 with the asked-for form.
    crossed = http.get(path, params=params, headers={"Accept": "text/csv", "If-None-Match": as_json.headers["etag"]})
    assert crossed.status_code == 200 and crossed.headers["content-type"] == CSV_TYPE
    back = http.get(path, params=params, headers={"If-None-Match": as_csv.headers["etag"]})
    assert back.status_code == 200 and back.json() == as_json.json()
    by_param = {**params, "format": "csv"}
    etag = http.get(path, params=by_param).headers["etag"]
    assert http.get(path, params=by_param, headers={"If-None-Match": etag}).status_code == 304


def test_the_response_cache_never_replays_one_form_for_the_other(http: httpx.Client) -> None:
    path, params = "/v1/metrics/orders", {**DAYS, "platform": "ios"}
    first = [http.get(path, params=params) for _ in range(3)]  # built once, then replayed from the cache
    as_csv = [http.get(path, params=params, headers={"Accept": "text/csv"}) for _ in range(3)]
    assert all(r.headers["content-type"] == "application/json" and r.json() == first[0].json() for r in first)
    assert all(r.headers["content-type"] == CSV_TYPE and r.text == as_csv[0].text for r in as_csv)
    assert as_csv[0].text.startswith("ts,platform,value,complete,revised\r\n")
    assert http.get(path, params=params).headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [({"format": "xml"}, "'xml' must be one of json, csv"), ({"format": ""}, "must be one of")],
)
def test_an_unknown_format_is_bad_parameter(http: httpx.Client, params: dict[str, str], fragment: str) -> None:
    response = http.get("/v1/metrics/events", params={**DAYS, **params})
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_parameter" and fragment in response.json()["error"]["message"]
    repeated = http.get("/v1/metrics/events", params=[*DAYS.items(), ("format", "csv"), ("format", "csv")])
    assert repeated.status_code == 400 and repeated.json()["error"]["code"] == "bad_parameter"


def test_errors_of_a_csv_request_stay_json(http: httpx.Client) -> None:
    response = http.get("/v1/metrics/events", params={**DAYS, "grain": "year", "format": "csv"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_grain"
    # Only the series route has a CSV form: elsewhere format is an unknown parameter.
    values = http.get("/v1/metrics/events/values/country", params={"start": DAYS["start"], "format": "csv"})
    assert values.status_code == 400 and values.json()["error"]["code"] == "bad_parameter"


def test_the_openapi_documents_format(http: httpx.Client) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/v1/metrics/{name}"]["get"]
    declared = {p["name"]: p for p in operation["parameters"]}
    assert declared["format"]["in"] == "query" and declared["format"]["schema"]["enum"] == ["json", "csv"]
    assert "text/csv" in declared["format"]["description"]


def test_a_label_is_never_a_formula_and_commas_are_quoted() -> None:
    document = {
        "series": [
            {
                "labels": {"campaign": "=HYPERLINK(1)", "country": "a,b"},
                "points": [{"ts": "2026-11-03T00:00:00Z", "value": 2.5, "complete": False, "revised": True}],
            }
        ]
    }
    text = series_csv(document, ["campaign", "country"], bounds=False)
    assert text.split("\r\n") == [
        "ts,campaign,country,value,complete,revised",
        '2026-11-03T00:00:00Z,\'=HYPERLINK(1),"a,b",2.5,false,true',
        "",
    ]
    assert negotiate(None, "text/csv;q=0.9, application/json;q=0.8") == "csv"
    assert negotiate(None, "text/csv;q=0") == "json" and negotiate("CSV", None) is None
