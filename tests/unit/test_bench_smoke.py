"""The upload benchmark's code runs end to end on a tiny input and reports every figure (no timing checks).

The scenarios run in this process (``--in-process``): a fresh interpreter per scenario, as ``make bench``
starts, costs tens of seconds each on a loaded machine. ``engine-2proc`` is left out (its forkserver
start is the slow part); the other scenarios and the memory row all run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks import bench_upload

pytestmark = pytest.mark.timeout(180)


def test_the_upload_benchmark_runs_and_reports_its_figures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The in-process scenarios point klar_default at their server; undone after the test, so no later
    # test of the session inherits that connection.
    monkeypatch.delenv("AIRFLOW_CONN_KLAR_DEFAULT", raising=False)
    result = bench_upload.main(
        [
            "--records",
            "120",
            "--memory-records",
            "60",
            "--delay-ms",
            "1",
            "--in-process",
            "--skip",
            "engine-2proc",
        ]
    )

    rows = result["rows"]
    kinds = [k for k in bench_upload.CHILDREN if k != "engine-2proc"]
    assert [(r["scenario"], r["records"]) for r in rows] == [(k, 120) for k in kinds] + [("engine", 60)]
    for row in rows:
        assert set(row) >= {"wall_s", "cpu_s", "peak_rss_mb", "records_per_s", "cpu_us_per_record"}
        assert row["cpu_s"] >= 0  # a tiny floor may finish within the clock's resolution
        assert row["records_per_s"] > 0
        assert row["peak_rss_mb"] > 0
    assert set(result["ratios"]) == {
        "cpu_engine_vs_floor",
        "throughput_engine_vs_naive",
        "throughput_engine_vs_1cpu",
        "throughput_no_val_vs_script",
        "cpu_list_vs_floor",
        "cpu_list_vs_floor_list",
        "cpu_array_vs_floor",
        "cpu_costs_vs_floor",
        "cpu_csv_vs_floor",
        "cpu_unknown_vs_floor",
        "cpu_pitfalls_vs_floor",
        "cpu_list_vs_engine",
        "cpu_array_vs_engine",
        "cpu_csv_vs_costs",
        "engine_rss_growth_mb",
    }
    out = capsys.readouterr().out
    assert "| engine-csv | 120 |" in out
    assert "| engine-pitfalls | 120 |" in out
    assert "| throughput, engine / naive |" in out
    assert "| >= 4x, " in out
    assert "| <= 1.5x, " in out
    assert "| >= 0.5x, " in out
    assert "| client CPU per record, engine-csv / engine-costs |" in out
    assert "| < 100 MB, " in out

    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Title\n\nbefore\n{bench_upload.README_START}\nold figures\n{bench_upload.README_END}\nafter\n"
    )
    bench_upload.write_readme(readme, result, "python -m tests.benchmarks.bench_upload --records 120")
    text = readme.read_text()
    assert "old figures" not in text
    assert text.startswith("# Title\n\nbefore\n<!-- bench_upload:start -->\n")
    assert text.endswith("<!-- bench_upload:end -->\nafter\n")
    assert "(`python -m tests.benchmarks.bench_upload --records 120`)" in text
    # The README gets exactly the tables the run printed.
    assert "\n".join(bench_upload.markdown(result)) in text
    assert "\n".join(bench_upload.markdown(result)) in out
