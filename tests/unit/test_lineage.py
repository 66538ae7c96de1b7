"""What the operator tells OpenLineage, without a run: naming, many files, validate mode, nothing read."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("airflow.providers.openlineage")

from airflow_provider_klar.lineage import MAX_FILES, dataset_of_file, upload_lineage

SUMMARY = {
    "records": 7,
    "accepted": 6,
    "rejected": 1,
    "batches": 1,
    "resumed_records": 0,
    "api_version": "07.2025",
}


def noted(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resource": "orders",
        "mode": "upload",
        "base_url": "https://open-api.getklar.com",
        "files": ["s3://exports/orders/day=1/part-0.jsonl.gz"],
        "pattern": "s3://exports/orders/day=1/*.jsonl.gz",
        "sql": None,
        "sql_conn_id": None,
        "summary": SUMMARY,
    }
    return {**base, **changes}


def test_file_urls_and_local_paths_follow_openlineage_naming() -> None:
    assert dataset_of_file("s3://exports/orders/part-0.jsonl.gz") == (
        "s3://exports",
        "orders/part-0.jsonl.gz",
    )
    assert dataset_of_file("gs://bucket/a.parquet") == ("gs://bucket", "a.parquet")
    assert dataset_of_file("/data/orders.jsonl") == ("file", "/data/orders.jsonl")
    assert dataset_of_file("file:///data/orders.jsonl") == ("file", "/data/orders.jsonl")


def test_one_file_in_one_resource_out_with_the_counts() -> None:
    lineage = upload_lineage(noted())

    (source,) = lineage.inputs
    assert (source.namespace, source.name) == ("s3://exports", "orders/day=1/part-0.jsonl.gz")
    assert source.inputFacets["inputStatistics"].rowCount == 7
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == ("klar://open-api.getklar.com", "orders")
    assert output.outputFacets["outputStatistics"].rowCount == 6
    facet = lineage.run_facets["klarUpload"]
    assert (facet.records, facet.accepted, facet.rejected, facet.apiVersion) == (7, 6, 1, "07.2025")


def test_more_files_than_can_be_named_become_their_folder() -> None:
    files = [f"s3://exports/orders/day=1/part-{i}.jsonl.gz" for i in range(MAX_FILES + 1)]
    lineage = upload_lineage(noted(files=files))

    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://exports", "orders/day=1")]
    few = upload_lineage(noted(files=files[:3]))
    assert len(few.inputs) == 3
    assert all(not d.inputFacets for d in few.inputs)  # per-file counts are not known


def test_validate_mode_stores_nothing_so_it_has_no_output() -> None:
    lineage = upload_lineage(noted(mode="validate"))
    assert lineage.outputs == []
    assert lineage.run_facets["klarUpload"].mode == "validate"


def test_a_task_that_failed_before_reading_has_empty_lineage() -> None:
    lineage = upload_lineage({})
    assert (lineage.inputs, lineage.outputs, lineage.run_facets) == ([], [], {})
    # Failed after reading its source but before a summary: inputs and output, no counts.
    early = upload_lineage(noted(summary=None))
    assert len(early.inputs) == 1
    assert early.outputs[0].outputFacets == {}


@pytest.mark.parametrize("installed", [True, False])
def test_parsing_a_dag_imports_no_openlineage(installed: bool) -> None:
    import subprocess
    import sys

    # Not installed: every import of the OpenLineage client fails, as on a worker without the extra.
    block = "" if installed else "sys.modules['openlineage'] = None\n"
    code = (
        f"import sys\n{block}"
        "from airflow_provider_klar.operators.klar import KlarUploadOperator\n"
        "KlarUploadOperator(task_id='t', records=[])\n"
        "names = [m for m, mod in sys.modules.items() if mod is not None]\n"
        "print(sorted(m for m in names if m.startswith('openlineage') or m.endswith('klar.lineage')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
