"""Progress bars: shown on a terminal only; the Spark bar follows a real application's tasks."""

from __future__ import annotations

import io
from datetime import date

from jobs import progress
from tally.app.cli import main
from tally.app.generate import generate


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal(capsys, tmp_path, monkeypatch):
    assert progress.wanted(Terminal()) and not progress.wanted(io.StringIO())
    items = [1, 2, 3]
    assert progress.hours(items, "x", enabled=False) is items
    monkeypatch.setenv("TALLY_DATA_DIR", str(tmp_path))
    from tally.core.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["generate", "--start", "2026-11-20", "--days", "1", "--events-per-hour", "5"]) == 0
    finally:
        get_settings.cache_clear()
    assert "generating hours" not in capsys.readouterr().err  # stderr is captured here, not a terminal
    generate(tmp_path, date(2026, 11, 20), 1, 5, progress=True)
    assert "generating hours: 100%" in capsys.readouterr().err


def test_spark_bar_counts_the_tasks_of_the_block(spark):
    out = Terminal()
    with progress.spark_tasks("computing 3 hour(s)", enabled=True, file=out):
        assert spark.range(0, 10_000, numPartitions=3).selectExpr("id % 7 AS k").groupBy("k").count().count() == 7
        assert spark.range(0, 1000, numPartitions=4).selectExpr("sum(id)").collect()[0][0] == 499500
    final = out.getvalue().split("\r")[-1]
    assert final.startswith("computing 3 hour(s): 100%"), final
