"""Response models: the shapes in the OpenAPI document are the API's contract."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str = Field(description="Human-readable explanation; wording may change.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class MetricInfo(BaseModel):
    name: str
    description: str
    unit: str
    kind: str = Field(description="count, sum, count_distinct, min, max, quantile or ratio.")
    dimensions: list[str] = Field(description="Dimensions usable as filters and group_by.")
    grains: list[str] = Field(description="Grains this metric is served at (hour, day, week, month).")
    max_window_days: int = Field(description="Largest window=<N>d this metric takes; 0 when it takes none.")
    slices: list[list[str]] = Field(
        default_factory=list,
        description="The dimension sets stored (each sorted; the total as []): every combination of dimensions "
        "unless the spec declares `slices`. A query whose filters and group_by no stored set contains is "
        "400 slice_not_stored; any other is answered, merging a larger set's slices if need be. For a ratio: "
        "the sets both its parts store (each part may store others of its own).",
    )
    sketch: str | None = Field(
        default=None,
        description="The sketch behind an estimate: hll or theta (count_distinct; theta metrics serve "
        "/v1/retention and /v1/funnel), kll (quantile); null for exact kinds and ratios.",
    )
    relative_error: float | None = Field(
        default=None,
        description="A sketch metric's nominal error, one standard deviation: for a distinct count the relative "
        "standard error of the estimate (about 95% of values lie within twice it; bounds=true gives each "
        "point's own); for a quantile KLL's normalized rank error (the value served for q has a rank within "
        "it of q, at 99% confidence). Null for exact kinds and ratios.",
    )
    q: float | None = Field(default=None, description="A quantile metric's default q (a request may ask for any).")


class MetricsResponse(BaseModel):
    metrics: list[MetricInfo]
    cards: list[str] = Field(
        description="The dashboard's headline metrics, in display order (the spec's dashboard.cards; "
        "by default its first five metrics)."
    )


class Point(BaseModel):
    ts: str = Field(
        description="Bucket start: 2026-11-27T10:00:00Z in UTC, else local time with its offset "
        "(2026-03-08T00:00:00-05:00)."
    )
    value: int | float | None = Field(
        description=(
            "null when no hour of the bucket is computed; counts and distinct counts are "
            "integers, sums and ratios numbers; a ratio is null when its denominator is 0."
        )
    )

    complete: bool = Field(
        default=False,
        description=(
            "True when every hour the point reads is computed, none is still in progress, and none is "
            "known to be out of date (input that changed since it was built, or a rollup not yet published)."
        ),
    )
    revised: bool = Field(
        default=False,
        description=(
            "True when some hour the point reads was published again with different data after it was "
            "first served (late input, a rerun, or a rollback): the value may differ from one seen before."
        ),
    )
    lower: float | None = Field(
        default=None,
        description="Only with bounds=true (distinct counts): the lower end of the estimate's about-95% "
        "interval (two standard deviations, from the sketch itself); null when value is null.",
    )
    upper: float | None = Field(
        default=None, description="Only with bounds=true: the upper end of that interval; null when value is null."
    )


class Series(BaseModel):
    labels: dict[str, str] = Field(description="The filters, plus the group_by value if any.")
    other: bool = Field(default=False, description="True for the series aggregating values beyond limit.")
    points: list[Point] = Field(description="One point per bucket of [start, end), in order.")


class ResponseWarning(BaseModel):
    code: str = Field(description="Stable code: value_not_seen (a filter value no stored slice of the range holds).")
    dimension: str
    value: str
    message: str = Field(description="Human-readable explanation; wording may change.")


class SeriesResponse(BaseModel):
    metric: str
    grain: str
    tz: str = Field(description="Time zone of the buckets.")
    window: str | None = Field(default=None, description="The rolling window, if any (e.g. 7d).")
    q: float | None = Field(
        default=None, description="Quantile metrics only: the q every value is (the request's, else the spec's)."
    )
    start: str
    end: str
    series: list[Series]
    build: str = Field(default="", description="Identifies the builds this response was read from (also its ETag).")
    as_of: str | None = Field(description="published_at of the newest build among the hours read; null if none.")
    warnings: list[ResponseWarning] = Field(
        default_factory=list,
        description="Things that make the answer likely not what was meant, e.g. a filter value never seen "
        "in the range (a misspelling answers 0, not an error).",
    )


class DimensionValue(BaseModel):
    value: str
    count: int | float | None = Field(
        description="The metric over the range for this value (for a ratio, its denominator); "
        "null when no hour of the range is computed."
    )


class ValuesResponse(BaseModel):
    metric: str
    dimension: str
    tz: str
    start: str
    end: str
    values: list[DimensionValue] = Field(
        description="Every value the dimension takes in a stored slice of [start, end), sorted by value."
    )
    build: str = Field(default="", description="Identifies the builds this response was read from (also its ETag).")
    as_of: str | None = Field(description="published_at of the newest build among the hours read; null if none.")


class FoldedDimension(BaseModel):
    """A dimension with more distinct values in the hour than its max_values (the cardinality guard)."""

    source: str
    dimension: str
    distinct_values: int = Field(description="Distinct values the dimension took in the hour.")
    max_values: int = Field(description="The values kept: the hour's top max_values by row count.")
    rows_folded: int = Field(description="Rows of the other values, stored under the value 'other'.")


class SourceRun(BaseModel):
    """One source's share of an hour's run (hours of specs with several sources)."""

    rows_read: int | None = None
    valid_rows: int | None = None
    invalid_rows: int | None = None
    invalid_by_reason: dict[str, int] = Field(default_factory=dict)
    duplicate_rows: int | None = None
    counted_events: int | None = None
    input_files: int | None = None
    folded_dimensions: list[FoldedDimension] = Field(
        default_factory=list,
        description="Dimensions whose values beyond the hour's top max_values were stored as 'other'.",
    )


class Run(SourceRun):
    hour: str = Field(description="The UTC hour, e.g. 2026-11-27T10:00:00Z.")
    source: str | None = Field(
        default=None, description="The source the statistics describe, when the spec has one source."
    )
    sources: dict[str, SourceRun] = Field(
        default_factory=dict,
        description="With several sources: each source's statistics (the counts above are their sums).",
    )
    build: str = Field(description="The live build of the hour.")
    published_at: str
    input_lag_seconds: float = Field(description="From the end of the hour to its publish.")
    computed_at: str | None = Field(
        default=None, description="When the job computed the hour, e.g. 2026-11-27T11:02:13.120000Z."
    )
    application_seconds: float | None = Field(
        default=None,
        description="Time the Spark application that computed the hour spent, on all its hours together: they share "
        "one scan and one aggregation, so no hour has a time of its own.",
    )
    application_hours: int | None = Field(default=None, description="How many hours that application computed.")
    revised_from: str | None = Field(default=None, description="The build this one replaced, if it is a revision.")
    movements: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Totals that moved by more than the configured factor against it."
    )


class RunsResponse(BaseModel):
    runs: list[Run] = Field(
        description="Every computed hour of [start, end), in order; without start and end, the newest 24 "
        "computed hours."
    )


class StorageSection(BaseModel):
    """The publisher's last storage report (``{p}:storage``, :mod:`cache.storage`), as /health shows it."""

    redis_bytes: int = Field(description="Bytes of every key under the prefix (MEMORY USAGE).")
    by_tier: dict[str, int] = Field(description="Bytes per tier: hour (builds), day (aggregates), index.")
    by_metric: dict[str, dict[str, int]] = Field(description="Per metric: bytes per tier.")
    rollup_bytes: int | None = Field(default=None, description="Bytes of the durable rollups on disk.")
    growth_per_day_bytes: int | None = Field(default=None, description="What one more day adds (see growth_basis).")
    growth_basis: str | None = Field(default=None, description="How growth_per_day_bytes was measured.")
    budget_bytes: int | None = Field(description="The budget (TALLY_REDIS_BUDGET_MB) in bytes; null: none.")
    days_until_budget: float | None = Field(description="Days until the budget is reached at that growth.")
    measured_at: str = Field(description="When the publisher measured (after its last publish).")
    warning: str | None = Field(
        default=None, description="Set when the budget is reached within 30 days (a warning: status stays ok)."
    )


class HealthResponse(BaseModel):
    status: str = Field(
        description="ok, or stale when the newest published hour ended more than max_lag_seconds ago "
        "(still 200: the API serves what it has; `tally status` applies the same rule)."
    )
    redis: str = Field(description="ok")
    cache: str = Field(description="warm, or cold when nothing is published (metrics then answer 503 cache_cold).")
    newest_hour: str | None = Field(description="The newest published hour, if any.")
    published_at: str | None = Field(description="When the last publish happened, if any.")
    lag_seconds: float | None = Field(default=None, description="Seconds since the newest published hour ended.")
    max_lag_seconds: int = Field(description="The freshness limit (TALLY_MAX_LAG_SECONDS).")
    pending_hours: list[str] = Field(
        default_factory=list,
        description="Published hours known to be out of date until the next run publishes them, oldest first.",
    )
    redefined_hours: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per metric: computed hours built under an older definition of it in the spec, or before it "
        "was added (its points there are complete: false or null until recomputed), oldest first.",
    )
    oldest_hour: str | None = Field(
        default=None,
        description="The oldest hour served at grain=hour: TALLY_HOUR_RETENTION_DAYS back from now (older hours "
        "are kept as day aggregates: day, week and month grains in UTC serve them); null: hours are kept forever.",
    )
    storage: StorageSection | None = Field(
        default=None, description="Redis and disk usage as last measured by the publisher; null: never measured."
    )
    cardinality_warnings: list[CardinalityWarning] = Field(
        default_factory=list,
        description="Dimensions that had more distinct values than their max_values in some of the 24 hours up "
        "to the newest published one: their rarer values are stored as 'other' (a warning; status stays ok).",
    )


class CardinalityWarning(BaseModel):
    source: str
    dimension: str
    max_values: int
    distinct_values: int = Field(description="The most distinct values the dimension took in one of the hours.")
    rows_folded: int = Field(description="Rows stored under the value 'other' over the hours.")
    hours: list[str] = Field(description="The hours it was folded in, oldest first.")
    message: str = Field(description="Human-readable explanation; wording may change.")


class HealthUnavailableResponse(ErrorResponse):
    status: str = Field(description="unavailable")
    redis: str = Field(description="unreachable")


class RetentionPeriod(BaseModel):
    offset: int = Field(description="k: the period B+k after the cohort's bucket B (0 is B itself).")
    start: str = Field(description="The period's start, as series timestamps are written.")
    value: int | None = Field(
        description="Distinct ids of the cohort during B also in the returning metric during B+k (a theta "
        "intersection); null when B or B+k has no computed hour (e.g. it lies in the future)."
    )
    rate: float | None = Field(description="value / the cohort's size, to 4 decimals; null when either is null or 0.")
    complete: bool = Field(description="Every hour of B and of B+k is computed and current (false if one is now).")
    revised: bool = Field(
        default=False, description="Some hour of B or B+k was published again with different data (as in series)."
    )
    lower: float | None = Field(default=None, description="Only with bounds=true: about-95% lower bound of value.")
    upper: float | None = Field(default=None, description="Only with bounds=true: about-95% upper bound of value.")


class Cohort(BaseModel):
    start: str = Field(description="The cohort bucket B's start.")
    size: int | None = Field(description="Distinct ids of the cohort metric during B; null when B is not computed.")
    complete: bool = Field(description="Every hour of B is computed and current.")
    periods: list[RetentionPeriod] = Field(description="Offsets 0..periods, in order.")
    lower: float | None = Field(default=None, description="Only with bounds=true: about-95% lower bound of size.")
    upper: float | None = Field(default=None, description="Only with bounds=true: about-95% upper bound of size.")


class RetentionResponse(BaseModel):
    cohort: str
    returning: str
    grain: str
    tz: str
    periods: int = Field(description="N: offsets 0..N follow each cohort.")
    cohorts: list[Cohort] = Field(description="One per bucket of [start, end), in order.")
    build: str = Field(default="", description="Identifies the builds this response was read from (also its ETag).")
    as_of: str | None = Field(default=None, description="published_at of the newest build read; null if none.")


class FunnelStep(BaseModel):
    metric: str
    value: int | None = Field(
        description="Distinct ids in every one of steps 1..i during the bucket (theta intersections; order within "
        "the bucket is not enforced); null when the bucket has no computed hour."
    )
    rate_from_previous: float | None = Field(description="value / the previous step's value; null for the first step.")
    rate_from_first: float | None = Field(description="value / the first step's value (1.0 for the first step).")
    lower: float | None = Field(default=None, description="Only with bounds=true: about-95% lower bound of value.")
    upper: float | None = Field(default=None, description="Only with bounds=true: about-95% upper bound of value.")


class FunnelBucket(BaseModel):
    start: str
    complete: bool = Field(description="Every hour of the bucket is computed and current for every step.")
    revised: bool = Field(
        default=False, description="Some hour of the bucket was published again with different data (as in series)."
    )
    steps: list[FunnelStep]


class FunnelResponse(BaseModel):
    steps: list[str]
    grain: str
    tz: str
    buckets: list[FunnelBucket] = Field(description="One per bucket of [start, end), in order.")
    build: str = Field(default="", description="Identifies the builds this response was read from (also its ETag).")
    as_of: str | None = Field(default=None, description="published_at of the newest build read; null if none.")
