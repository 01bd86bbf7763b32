"""Each hour's input folders, looked at from the driver without Spark.

Where a source's hour is (its spec ``path`` filled in), the files an hour will
run on (:class:`HourPlan`, checked by :mod:`jobs.input_check`), and the cheap
fingerprints of those files that tell which computed hours have changed input
since they were built (late or rewritten files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jobs.input_check import HourInput
from tally.core.layout import combined_fingerprint, hour_folder, input_fingerprint, parquet_files
from tally.core.runstats import built_fingerprints
from tally.core.spec import MetricSpec, Source


@dataclass(frozen=True)
class HourPlan:
    """An hour that can run: every source's checked input files."""

    hour: datetime
    inputs: dict[str, HourInput]  # source name -> its files of the hour

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(path for hour_input in self.inputs.values() for path in hour_input.files)


def source_hour_dir(data_dir: Path, source: Source, hour: datetime) -> Path:
    """The folder of ``source``'s files of ``hour``."""
    return hour_folder(data_dir, source.path, hour)


def source_fingerprints(data_dir: Path, spec: MetricSpec, hour: datetime) -> dict[str, str] | None:
    """Each source's input fingerprint of the hour, None while a source's folder is missing."""
    per_source = {}
    for source in spec.sources:
        folder = source_hour_dir(data_dir, source, hour)
        if not folder.is_dir():
            return None
        per_source[source.name] = input_fingerprint(parquet_files(folder))
    return per_source


def hour_input_fingerprint(data_dir: Path, spec: MetricSpec, hour: datetime) -> str | None:
    """The fingerprint of the hour's input over every source, None while a source's folder is missing."""
    per_source = source_fingerprints(data_dir, spec, hour)
    return None if per_source is None else combined_fingerprint(per_source)


def changed_hours(
    data_dir: Path,
    spec: MetricSpec,
    hours: Sequence[datetime],
    built: Mapping[datetime, str | None] | None = None,
) -> list[datetime]:
    """Computed hours whose input changed since they were built (late or rewritten files, in any source).

    ``built`` (from :func:`tally.core.runstats.built_fingerprints`) saves reading the
    statistics again when the caller already has them.
    """
    built = built_fingerprints(data_dir, hours) if built is None else built
    changed = []
    for hour in hours:
        if hour not in built:
            continue
        now = hour_input_fingerprint(data_dir, spec, hour)
        if now is not None and built[hour] != now:
            changed.append(hour)
    return changed
