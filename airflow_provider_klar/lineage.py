"""OpenLineage for ``KlarUploadOperator``: what an upload read, what it wrote to Klar, and how many records.

Airflow's OpenLineage provider (``pip install 'airflow-provider-klar[openlineage]'``) asks the operator
for its lineage when the task ends (``get_openlineage_facets_on_complete`` and ``..._on_failure``); the
operator hands what it recorded during the run to :func:`upload_lineage`. This module imports the
OpenLineage client, so it is imported only then, never when a DAG is parsed.

- **Inputs**: each file read (an ``s3://bucket/key`` URL becomes namespace ``s3://bucket``, name
  ``key``; a local file namespace ``file``, name its path), the tables a ``sql=`` query reads (parsed by
  the OpenLineage provider's SQL parser where the database's provider supports it; else the query
  travels as the job's ``sql`` facet), nothing for ``records=`` (the upstream task is the lineage).
- **Output** (``mode="upload"`` only; ``validate`` stores nothing): the Klar resource, namespace
  ``klar://<host>`` of the connection's base URL, name the resource (``orders``), with the
  ``outputStatistics`` facet's ``rowCount`` = the records Klar accepted.
- **Run facet** ``klarUpload``: the counts of the summary (records, accepted, rejected, batches...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import attr
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    RunFacet,
    input_statistics_input_dataset,
    output_statistics_output_dataset,
)

__all__ = ["MAX_FILES", "KlarUploadRunFacet", "UploadRecord", "dataset_of_file", "upload_lineage"]

#: Most files named one by one as inputs; an upload of more names their common folder instead.
MAX_FILES = 100
_SUMMARY_COUNTS = ("records", "accepted", "rejected", "batches", "resumed_records")
_GLOB = "*?["


@dataclass
class UploadRecord:
    """What the operator notes during a run for its lineage (plain data: no OpenLineage import).

    :param resource: The Klar resource.
    :param mode: ``upload`` or ``validate``.
    :param base_url: The connection's base URL (scheme, host, port).
    :param files: The files read (display names: URLs without connection ids, or local paths).
    :param pattern: The ``path`` as given (a file, folder or glob), for uploads of many files.
    :param sql: The query of a ``sql=`` source.
    :param sql_conn_id: Its connection.
    :param summary: The upload's summary, once there is one.
    """

    resource: str
    mode: str
    base_url: str
    files: Sequence[str] = ()
    pattern: str | None = None
    sql: str | None = None
    sql_conn_id: str | None = None
    summary: Mapping[str, Any] | None = field(default=None)


@attr.define
class KlarUploadRunFacet(RunFacet):
    """The counts of one upload run (``klarUpload`` in the run's facets)."""

    resource: str
    mode: str
    apiVersion: str | None = None  # OpenLineage facets use camelCase
    records: int | None = None
    accepted: int | None = None
    rejected: int | None = None
    batches: int | None = None
    resumedRecords: int | None = None

    @staticmethod
    def _get_schema() -> str:
        return "https://github.com/klar-airflow/airflow-provider-klar/blob/main/docs/lineage.md#klarupload"


def dataset_of_file(name: str) -> tuple[str, str]:
    """Return the OpenLineage ``(namespace, name)`` of a file: ``s3://bucket`` and ``key``, or ``file``
    and the path.

    :param name: A URL without connection id or credentials, or a local path.
    """
    if "://" not in name:
        return "file", name
    parts = urlsplit(name)
    if parts.scheme in ("file", "local"):
        return "file", parts.path
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def _folder(pattern: str) -> str:
    """The part of ``pattern`` before its first glob character, up to the last ``/``."""
    cut = min((pattern.index(c) for c in _GLOB if c in pattern), default=len(pattern))
    head = pattern[:cut]
    return head.rsplit("/", 1)[0] if cut < len(pattern) else head.rstrip("/")


def _file_inputs(record: UploadRecord) -> list[InputDataset]:
    names = list(record.files)
    if len(names) > MAX_FILES and record.pattern:
        names = [_folder(record.pattern)]
    datasets = [InputDataset(*dataset_of_file(name)) for name in names]
    summary = record.summary
    if len(datasets) == 1 and summary is not None and isinstance(summary.get("records"), int):
        # One input: what was read of it is known exactly.
        statistics = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
            rowCount=summary["records"], fileCount=len(record.files)
        )
        datasets[0].inputFacets = {"inputStatistics": statistics}
    return datasets


def _sql_lineage(record: UploadRecord) -> tuple[list[InputDataset], dict[str, Any]]:
    """The tables the query reads, through the provider's SQL parser; else the query as a job facet."""
    from openlineage.client.facet_v2 import sql_job

    sql, conn_id = record.sql or "", record.sql_conn_id or ""
    try:
        from airflow.providers.common.compat.openlineage.utils.sql import get_openlineage_facets_with_sql
        from airflow.providers.common.compat.sdk import BaseHook

        hook = BaseHook.get_connection(conn_id).get_hook()
        found = get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=conn_id, database=None)
    except Exception:  # lineage is a nicety: the databases' providers differ in what they support
        found = None
    if found is not None and found.inputs:
        return list(found.inputs), dict(found.job_facets)
    return [], {"sql": sql_job.SQLJobFacet(query=sql)}


def upload_lineage(noted: Mapping[str, Any]) -> Any:
    """Return the ``OperatorLineage`` of an upload: inputs, the Klar resource as output, the counts.

    :param noted: What the operator noted during the run: the fields of :class:`UploadRecord`; empty
        when the task failed before reading its source (then the lineage is empty too).
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    if "resource" not in noted:
        return OperatorLineage()
    record = UploadRecord(**noted)

    inputs: list[InputDataset] = []
    job_facets: dict[str, Any] = {}
    if record.sql is not None:
        inputs, job_facets = _sql_lineage(record)
    elif record.files:
        inputs = _file_inputs(record)
    summary = record.summary or {}
    outputs: list[OutputDataset] = []
    if record.mode == "upload":
        host = urlsplit(record.base_url).netloc or record.base_url
        output = OutputDataset(f"klar://{host}", record.resource)
        if isinstance(summary.get("accepted"), int):
            statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=summary["accepted"]
            )
            output.outputFacets = {"outputStatistics": statistics}
        outputs.append(output)
    counts = {key: summary.get(key) for key in _SUMMARY_COUNTS}
    run_facet = KlarUploadRunFacet(
        resource=record.resource,
        mode=record.mode,
        apiVersion=summary.get("api_version"),
        records=counts["records"],
        accepted=counts["accepted"],
        rejected=counts["rejected"],
        batches=counts["batches"],
        resumedRecords=counts["resumed_records"],
    )
    return OperatorLineage(
        inputs=inputs, outputs=outputs, run_facets={"klarUpload": run_facet}, job_facets=job_facets
    )
