"""Tally's settings: the one place configuration is read from the environment.

Everything else takes plain arguments; callers get a :class:`Settings` from
:func:`get_settings` (cached) or build one explicitly in tests.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SPEC_PATH = Path(__file__).parents[1] / "metrics.yaml"
# `make up AIRFLOW_DB=postgres`: Airflow's metadata in the local PostgreSQL (created when missing).
LOCAL_AIRFLOW_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/tally_airflow"


class Settings(BaseSettings):
    """Runtime configuration. Environment variables are named in each field."""

    # populate_by_name: code (and tests) may pass fields by name, e.g. Settings(redis_url=...).
    model_config = SettingsConfigDict(env_prefix="TALLY_", extra="ignore", frozen=True, populate_by_name=True)

    data_dir: Path = Field(
        default=Path("data"),
        description="Root of raw events, rollups and quarantine (TALLY_DATA_DIR).",
    )
    spec_path: Path = Field(default=DEFAULT_SPEC_PATH, description="The metric spec file (TALLY_SPEC_PATH).")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "TALLY_REDIS_URL"),
        description="Redis that holds the published metrics (REDIS_URL).",
    )
    api_redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TALLY_API_REDIS_URL"),
        description="Redis URL the API reads with, e.g. as the read-only ACL user (default: REDIS_URL).",
    )
    redis_prefix: str = Field(
        default="tally",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prefix of every Redis key Tally owns (TALLY_REDIS_PREFIX).",
    )
    spark_master: str = Field(
        default="local[*]",
        validation_alias=AliasChoices("SPARK_MASTER", "TALLY_SPARK_MASTER"),
        description="Spark master URL (SPARK_MASTER); ignored when SPARK_REMOTE is set.",
    )
    spark_remote: str | None = Field(
        default=None,
        pattern=r"^sc://[^/\s]+",
        validation_alias=AliasChoices("SPARK_REMOTE", "TALLY_SPARK_REMOTE"),
        description="A Spark Connect endpoint, sc://host:port (SPARK_REMOTE): the job runs on that warm server "
        "instead of starting a JVM and SparkSession in every run (default: in-process).",
    )
    superseded_ttl_seconds: int = Field(
        default=600,
        ge=1,
        description="How long a replaced build stays readable for in-flight readers.",
    )
    max_hour_buckets: int = Field(default=24 * 93, ge=1, description="Largest hour-grain range the API serves.")
    max_day_buckets: int = Field(default=400, ge=1, description="Largest day-grain range the API serves.")
    publish_lag_seconds: int = Field(
        default=600,
        ge=0,
        le=3600,
        description="How long after the top of an hour its publish is expected (sets Cache-Control max-age).",
    )
    max_lag_seconds: int = Field(
        default=7200,
        ge=1,
        description="Freshness limit: with the newest published hour ended longer ago than this, /health says "
        "stale and `tally status` STALE (the default allows one missed hourly publish).",
    )
    max_movement_factor: float = Field(
        default=10.0,
        gt=1,
        description="A metric total moving by more than this factor against the previous build is reported.",
    )
    history_builds: int = Field(
        default=3,
        ge=1,
        description="Builds of each hour kept readable, the live one included (`tally rollback` needs 2).",
    )
    late_data_horizon_hours: int = Field(
        default=72,
        ge=0,
        description="Each hourly run also recomputes hours this far back whose input changed (late files).",
    )
    reconcile_horizon_days: int = Field(
        default=35, ge=1, description="How far back the daily tally_reconcile DAG looks for changed input."
    )
    # --- bounded storage: tiers, compaction, budget ------------------------------------
    hour_retention_days: int = Field(
        default=14,
        ge=0,
        description="Days (back from now) hour-level builds stay in Redis; older hours are served from their "
        "day aggregate at day, week and month grain only; 0 keeps hours forever (TALLY_HOUR_RETENTION_DAYS).",
    )
    day_retention_days: int = Field(
        default=0,
        ge=0,
        description="Days (back from now) day aggregates stay in Redis; 0 keeps them forever "
        "(TALLY_DAY_RETENTION_DAYS).",
    )
    rollup_retention_days: int = Field(
        default=0,
        ge=0,
        description="Days (back from now) durable rollups are kept on disk; 0 keeps them forever "
        "(TALLY_ROLLUP_RETENTION_DAYS).",
    )
    compact_after_days: int = Field(
        default=7,
        ge=0,
        description="Hourly rollup partitions of UTC days that ended more than this many days ago are compacted "
        "into one file per day; 0 turns compaction off (TALLY_COMPACT_AFTER_DAYS).",
    )
    redis_budget_mb: float | None = Field(
        default=None,
        gt=0,
        description="Redis memory Tally may use under its prefix, in MB: `tally storage` reports the days left, "
        "and a publish that would exceed it fails verification (TALLY_REDIS_BUDGET_MB; unset: no budget).",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `tally serve` binds (TALLY_API_HOST).")
    api_token: SecretStr | None = Field(
        default=None,
        description="If set, every API request but /health and the dashboard page needs "
        "`Authorization: Bearer <token>` (TALLY_API_TOKEN).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to read the API from a browser, comma-separated; none by default.",
    )
    api_response_cache_mb: int = Field(
        default=64,
        ge=0,
        description="Memory for encoded series responses the API serves again while the data is unchanged; "
        "0 turns it off (TALLY_API_RESPONSE_CACHE_MB).",
    )
    events_keep: int = Field(
        default=10_000,
        ge=1,
        description="Publish events kept in the `{prefix}:events` stream for clients to replay (TALLY_EVENTS_KEEP).",
    )
    events_keepalive_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between keep-alive comments on an idle `GET /v1/events` stream "
        "(TALLY_EVENTS_KEEPALIVE_SECONDS).",
    )
    webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URLs each publish event is POSTed to as JSON, comma-separated; none by default "
        "(TALLY_WEBHOOK_URLS).",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 of each webhook body, sent as `X-Tally-Signature: sha256=<hex>` "
        "(TALLY_WEBHOOK_SECRET).",
    )
    input_wait_hours: float = Field(
        default=6.0,
        gt=0,
        description="How long tally_hourly waits for an hour's input folder before failing.",
    )
    airflow_database_url: str | None = Field(
        default=None,
        repr=False,  # may hold a password
        description="SQLAlchemy URL of the PostgreSQL database `make up` and `make demo` keep Airflow's metadata "
        "in, with the LocalExecutor; `postgres` means the local server's "
        f"{LOCAL_AIRFLOW_DATABASE_URL}; unset: SQLite under the Airflow home (TALLY_AIRFLOW_DATABASE_URL).",
    )

    @field_validator("cors_origins", "webhook_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("api_token", "webhook_secret", "spark_remote", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("airflow_database_url", mode="before")
    @classmethod
    def _airflow_database(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if value == "postgres":
                return LOCAL_AIRFLOW_DATABASE_URL
            if not value.startswith("postgresql"):
                raise ValueError(f"not a PostgreSQL URL (postgresql+psycopg2://user@host:5432/db): {value!r}")
        return value

    @property
    def api_read_url(self) -> str:
        """The Redis URL the API connects with."""
        return self.api_redis_url or self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
