"""The SQL benchmark's code runs end to end on a tiny table and reports its figures (no memory or timing
checks: those belong to ``make bench``)."""

from __future__ import annotations

import pytest

from tests.benchmarks import bench_sql

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_the_sql_benchmark_runs_and_reports_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench_sql.main(["--rows", "300", "600", "--fetchall-max", "300"])

    assert [(r["scenario"], r["records"]) for r in result["rows"]] == [
        ("engine", 300),
        ("fetchall", 300),
        ("engine", 600),
    ]
    for row in result["rows"]:
        assert row["peak_rss_mb"] >= row["start_rss_mb"] > 0
        assert row["wall_s"] > 0
    assert set(result["growth"]) == {"engine_rss_growth_mb", "fetchall_kb_per_row", "fetchall_mb_for_largest"}
    out = capsys.readouterr().out
    assert "engine: peak RSS growth from 300 to 600 rows" in out
    assert "fetchall: " in out
