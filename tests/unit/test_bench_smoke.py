"""The upload benchmark's code runs end to end on a tiny input and reports every figure (no timing checks)."""

from __future__ import annotations

import pytest

from tests.benchmarks import bench_upload

pytestmark = pytest.mark.timeout(180)


def test_the_upload_benchmark_runs_and_reports_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = bench_upload.main(["--records", "300", "600", "--delay-ms", "1"])

    rows = result["rows"]
    kinds = ["baseline", "engine", "engine-2proc", "engine-no-val", "bare-validate", "bare-validate-json"]
    assert [(r["scenario"], r["records"]) for r in rows] == [(k, n) for n in (300, 600) for k in kinds]
    for row in rows:
        assert set(row) >= {"wall_s", "cpu_s", "peak_rss_mb", "records_per_s", "cpu_us_per_record"}
        assert row["cpu_s"] > 0
        assert row["peak_rss_mb"] > 0
    assert set(result["ratios"]) == {
        "throughput_vs_baseline",
        "cpu_per_record_vs_bare_validation",
        "cpu_per_record_vs_bare_validate_json",
        "throughput_2proc_vs_baseline",
        "cpu_per_record_2proc_vs_bare_validation",
        "cpu_per_record_2proc_vs_engine",
        "engine_rss_growth_mb",
        "baseline_rss_growth_mb",
    }
    out = capsys.readouterr().out
    assert "throughput, engine / baseline" in out
    assert "(target >= 3x)" in out
    assert "throughput, engine-2proc / baseline" in out
