"""KlarUploadOperator: stream records from XCom, files or a query into Klar, accounting for every record."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence, Sized
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Asset, BaseOperator

from airflow_provider_klar.exceptions import (
    KlarConfigurationError,
    KlarRejectedRecordsError,
    KlarSourceError,
)
from airflow_provider_klar.hooks._retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_MAX_RETRY_WAIT,
    check_retry_settings,
)
from airflow_provider_klar.links.klar import KlarLink
from airflow_provider_klar.resources import RESOURCES, get_resource
from airflow_provider_klar.upload.accounting import check_max_rejected, describe_limit, exceeds_max_rejected
from airflow_provider_klar.upload.batching import DEFAULT_MAX_BATCH_BYTES, check_limits
from airflow_provider_klar.upload.engine import EngineSettings, UploadEngine, UploadMode
from airflow_provider_klar.upload.report import (
    build_summary,
    carry_over_rejections,
    rejected_sink,
    summary_line,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_klar.upload.settings import CheckpointStore, EngineResult

#: The label of a mapped task instance in the UI: the file it uploads (the numeric index for records).
DEFAULT_MAP_INDEX_TEMPLATE = (
    "{{ task.source_label if ti.map_index is not none and ti.map_index >= 0 else '' }}"
)
#: The default: Airflow's task state store where it exists (Airflow 3.3+), an Airflow Variable before.
AUTO_CHECKPOINT = "auto"
#: Checkpoints in Airflow's task state store (Airflow 3.3 and later).
TASK_STATE_CHECKPOINT = "task_state_store"
#: Checkpoints in an Airflow Variable (any Airflow).
VARIABLE_CHECKPOINT = "variable"


def _templated(value: object) -> bool:
    return isinstance(value, str) and "{{" in value


def resource_asset(resource: str) -> Asset:
    """Return the Airflow Asset that stands for Klar's data of ``resource`` (``klar://orders``).

    :param resource: A Klar resource name.
    """
    return Asset(f"klar://{resource}")


class KlarUploadOperator(BaseOperator):
    """Upload records to Klar in concurrent batches of at most 1000, with an exact account of every record.

    Records come from exactly one of ``records`` (a list, any iterable, or an ``XComArg`` of dicts or
    models), ``path`` (a file, folder or glob: local, ``file://``, ``s3://``, ``gs://`` ... in JSON
    Lines, JSON array, Parquet or, for the flat cost resources, CSV; optionally gzip-compressed) and
    ``sql`` (a query run on the database of ``sql_conn_id``, its rows streamed through a cursor). They
    are read record by record, mapped by ``transform`` when given (and their e-mail addresses hashed
    with ``hash_emails``), checked locally against the models
    (``validate_locally``), encoded, grouped into batches of at most ``batch_size`` records and
    ``max_batch_bytes`` bytes, and sent with up to ``max_concurrency`` requests in flight. Memory stays
    bounded by ``batch_size x (max_concurrency + 1)`` records whatever the source size.

    **Outcomes.** A record is accepted (stored by Klar, or found valid in ``mode="validate"``) or
    rejected: locally (by the models, as a malformed line, or over the byte cap) or by Klar (a 400
    answer, or a 207 partial one). When Klar refuses a batch with 400 it stores none of it; the
    records it did not object to are sent again once, without the rejected ones, so every valid
    record arrives. With ``rejected_path`` every rejected record is written there as JSON Lines with
    its errors. The task fails with :class:`~airflow_provider_klar.exceptions.KlarRejectedRecordsError`
    when the rejections exceed ``max_rejected``, but only after every valid record was sent.

    **Newest wins.** Records sharing an upsert key (``id``; ``orderId``, ``lineItemId`` and ``sku`` for
    ``cogs``) are versions of one record, and Klar ends up holding the last in source order: within a
    batch only the last version is sent (the others count as ``superseded``), and a batch waits while
    an earlier unanswered batch holds one of its keys. Parallel task instances (mapped files sharing
    ids) are not ordered against each other.

    **Unreadable sources.** When reading the source fails part way (a broken file, a failing
    ``records=`` iterable), what was read is sent and accounted for, then the task fails with
    :class:`~airflow_provider_klar.exceptions.KlarSourceError` whatever ``max_rejected`` says; the
    summary is pushed to XCom all the same, with ``complete`` false and ``unread`` saying where.

    **Resume.** With ``checkpoint`` set (the default), the source positions whose batches Klar has
    answered are saved for this task instance (DAG, run, task and map index), often enough that at most
    ``max_concurrency + 1`` sent batches are ever outside the saved state, and when the try fails: in
    Airflow's task state store from Airflow 3.3, in a Variable before. When
    Airflow retries the task, the new try skips those positions before even reading them into the
    models, and adds its counts to the earlier ones; the checkpoint is removed when the task
    succeeds, and when a try fails with no retry left. Limits: a batch that was in flight when a
    try died (a killed worker, a lost connection) was not confirmed and is sent again, which is
    harmless since Klar upserts by id and no later version of its records was sent before it;
    positions are only meaningful if the source yields the same records in the same
    order on every try (true of an upstream task's XCom; for files, a checkpoint is used only while
    their names, sizes and change markers are the same, so fixing a file starts over); a try failing
    because of ``max_rejected`` removes the checkpoint, since every valid record was stored and a new
    try (after fixing the data) must read everything again. A resumed try
    copies the earlier try's rejected records of confirmed positions into its ``rejected_path`` file
    first, so the file stays complete; if the earlier worker was killed before it flushed that file,
    those lines are missing from it (the counts in the summary still include them).

    The summary returned to XCom is small whatever the upload size: ``resource``, ``api_version``,
    ``mode``, ``records``, ``batches``, ``accepted``, ``rejected``, ``rejected_ids`` (the first 100),
    ``rejected_path``, ``started_at``, ``finished_at``, ``duration_s``, ``resumed_records``,
    ``skipped_batches``, ``resent_not_stored``, ``superseded``, ``held_back_batches``, ``complete``,
    ``unread`` and ``warnings`` (counts of unknown fields and pitfalls).

    :param resource: The Klar resource: ``orders``, ``refunds``, ``cogs``, ``logistics-costs`` or
        ``transaction-costs``. Templated.
    :param records: The records to send: a list, any iterable or an ``XComArg`` of dicts (camelCase
        names) or models. Templated. Exactly one of ``records``, ``path`` and ``sql``.
    :param path: A file, folder or glob of files to send, local or in object storage. Templated.
    :param sql: A query whose rows are the records, or the path of a ``.sql`` file holding it. A query
        of one column reads it as each record's JSON object (``json_build_object(...)``); a query of
        more columns reads each row as a dict of its columns. Rows are fetched in chunks through a
        server-side cursor where the driver has one. Resume after a failed try needs an ``ORDER BY``
        on a unique key; without one the task warns and sends every row again. Templated.
    :param sql_conn_id: The Airflow connection of the database of ``sql``: any connection whose hook
        is a ``DbApiHook`` of ``apache-airflow-providers-common-sql`` (postgres, mysql, sqlite,
        snowflake, BigQuery...).
    :param transform: A function applied to every source record before validation (e.g. an export's
        snake_case columns to Klar's camelCase fields); it returns the record to send, a dict. An
        exception in it rejects that record with its message; the others go on.
    :param hash_emails: Send each order's ``customer.emailHash`` (hex SHA-1 of the salt Klar issued
        followed by the trimmed, lower-cased address) instead of ``customer.email``, which is dropped.
        The salt comes from the ``klar`` connection's **E-mail hash salt** field; applied after
        ``transform`` and before validation, to any source. Orders only.
    :param mode: ``upload`` (store) or ``validate`` (Klar checks, stores nothing; not for
        ``transaction-costs``, which has no validate endpoint).
    :param batch_size: Most records per request, 1 to 1000.
    :param max_concurrency: Most requests in flight at once, 1 to 32. While Klar answers 429 or 503 the
        hook sends fewer (halving at each), and climbs back to this as answers are good again.
    :param validation_workers: Processes that parse, validate and encode the records, 1 to 32. With 2
        or more, JSON Lines files are checked by that many worker processes (never forked from the
        task's process, which has threads: a forkserver or spawn starts them), with the
        same outcomes in the same order; other sources stay in the task's process. Pays off for large
        files on a worker with spare cores, at the cost of more CPU in total. Default 1: in the task's
        process.
    :param validate_locally: Check every record against the models first; invalid ones are never sent.
    :param strict: With local validation, reject records that look like a known pitfall (a tax rate of
        19 instead of 0.19, millisecond timestamps...) instead of sending them with a warning.
    :param max_rejected: How many rejections the task tolerates: an int (a count) or a float below 1
        (a ratio of the records read). Default 0: any rejection fails the task, after the upload.
    :param rejected_path: Where to write the rejected records and their errors as JSON Lines, local or
        object storage. Templated.
    :param file_format: ``jsonl``, ``json``, ``csv`` (optionally ``.gz``) or ``parquet`` for every file
        of ``path``, instead of telling by the extension.
    :param max_batch_bytes: Most bytes in one request body; a single record larger than this is rejected.
    :param checkpoint: Where progress survives a failed try: ``"auto"`` (the default: Airflow's task
        state store on Airflow 3.3 and later, an Airflow Variable before), ``"task_state_store"``,
        ``"variable"`` (both work on every executor), a folder path or URL in object storage, or
        ``None`` for no resume.
    :param source_conn_id: The Airflow connection for the object storage of ``path``, ``rejected_path``
        and a checkpoint folder, when their URLs do not name one.
    :param klar_conn_id: The Airflow connection of type ``klar``.
    :param api_version: The API version (``MM.YYYY``); default the connection's, then the resource's.
        Templated.
    :param max_attempts: Attempts per request that may fail for other reasons than rate limiting
        (network errors, timeouts, 5xx without ``Retry-After``), the first included. Rate-limit answers
        (429, or any with ``Retry-After``) are bounded by ``max_retry_time`` only.
    :param max_retry_wait: Longest wait between two attempts of a request, in seconds; also caps
        ``Retry-After``.
    :param max_retry_time: Most seconds one request (one batch) may take, its retries and waits included.
    :param map_index_template: The label of a mapped task instance; by default the name of its file.
    """

    template_fields: Sequence[str] = ("records", "path", "sql", "resource", "api_version", "rejected_path")
    # sql= may name a .sql file (relative to the DAG's folder or template_searchpath): Airflow reads it.
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"records": "json", "sql": "sql"}
    operator_extra_links = (KlarLink(),)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        resource: str = "orders",
        records: Iterable[Any] | None = None,
        path: Any = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        transform: Callable[[Any], Any] | None = None,
        hash_emails: bool = False,
        mode: str = "upload",
        batch_size: int = 1000,
        max_concurrency: int = 4,
        validation_workers: int = 1,
        validate_locally: bool = True,
        strict: bool = False,
        max_rejected: int | float = 0,
        rejected_path: Any = None,
        file_format: str | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        checkpoint: Any = AUTO_CHECKPOINT,
        source_conn_id: str | None = None,
        klar_conn_id: str = "klar_default",
        api_version: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        max_retry_time: float = DEFAULT_MAX_RETRY_TIME,
        map_index_template: str | None = DEFAULT_MAP_INDEX_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        _check_sources(records, path, sql, sql_conn_id, transform)
        try:
            upload_mode = UploadMode(mode)
            check_limits(batch_size, max_batch_bytes)
            max_rejected = check_max_rejected(max_rejected)
            check_retry_settings(max_attempts, max_retry_wait, max_retry_time)
            EngineSettings(
                resource="orders",
                api_version="07.2025",
                max_concurrency=max_concurrency,
                validation_workers=validation_workers,
            )
        except ValueError as err:
            if "UploadMode" in str(err):
                err = ValueError(f"mode must be 'upload' or 'validate', got {mode!r}.")
            raise KlarConfigurationError(str(err)) from None
        if not _templated(resource):
            _check_resource(resource, upload_mode)
            if hash_emails and resource != "orders":
                raise KlarConfigurationError(
                    f"hash_emails=True hashes customer.email, which only orders have, not {resource}."
                )
        if checkpoint is False:
            checkpoint = None
        if upload_mode is UploadMode.UPLOAD and "outlets" not in kwargs and not _templated(resource):
            kwargs["outlets"] = [resource_asset(resource)]
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.resource = resource
        self.records = records
        self.path = path
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.transform = transform
        self.hash_emails = hash_emails
        # The .sql file's name names the query in messages (Airflow replaces sql by its text).
        self._sql_name = os.path.basename(sql) if isinstance(sql, str) and sql.endswith(".sql") else None
        self.mode = upload_mode.value
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.validation_workers = validation_workers
        self.validate_locally = validate_locally
        self.strict = strict
        self.max_rejected = max_rejected
        self.rejected_path = rejected_path
        self.file_format = file_format
        self.max_batch_bytes = max_batch_bytes
        self.checkpoint = checkpoint
        self.source_conn_id = source_conn_id
        self.klar_conn_id = klar_conn_id
        self.api_version = api_version
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self.max_retry_time = max_retry_time
        self._stop: threading.Event | None = None
        self._hook: Any = None
        # What the run read and wrote, noted for OpenLineage (see get_openlineage_facets_on_complete).
        self._lineage: dict[str, Any] | None = None

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:  # type: ignore[override]
        """Like ``BaseOperator.partial``, adding the resource's Asset as outlet as ``__init__`` does.

        Airflow fills a mapped task's ``outlets`` with ``[]`` before any instance exists, so the default
        outlet must be set here for the scheduler to see it.
        """
        resource = kwargs.get("resource", "orders")
        mode = kwargs.get("mode", "upload")
        if (
            mode == "upload"
            and "outlets" not in kwargs
            and isinstance(resource, str)
            and not _templated(resource)
        ):
            kwargs["outlets"] = [resource_asset(resource)]
        # Airflow 2.11's partial() reads BaseOperator's defaults, not this __init__'s: without this, mapped
        # instances there would be labelled by number instead of by their file.
        kwargs.setdefault("map_index_template", DEFAULT_MAP_INDEX_TEMPLATE)
        return super().partial(**kwargs)  # type: ignore[misc]

    @property
    def source_label(self) -> str:
        """A short name of the source for the UI: the file (or pattern) name, ``.sql`` file, or ``""``."""
        if self.path is None:
            return self._sql_name or ""
        text = os.fspath(self.path) if isinstance(self.path, os.PathLike) else str(self.path)
        return PurePosixPath(text.rstrip("/")).name or text

    # -- execution --------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Send the records; return the summary.

        :param context: The task's context.
        :raises KlarConfigurationError: For wrong arguments, before anything is sent.
        :raises KlarRejectedRecordsError: When more records were rejected than ``max_rejected`` allows
            (after every valid record was sent).
        """
        from airflow_provider_klar.hooks.klar import KlarHook

        mode = UploadMode(self.mode)
        row = _check_resource(self.resource, mode)
        self._stop = threading.Event()
        hook = self._hook = KlarHook(
            self.klar_conn_id,
            api_version=self.api_version,
            max_attempts=self.max_attempts,
            max_retry_wait=self.max_retry_wait,
            max_retry_time=self.max_retry_time,
            max_concurrency=self.max_concurrency,
        )
        source: Iterable[Any] | None = None
        try:
            api_version = hook.api_version_for(row.name)
            validator = self._validator(row.name, api_version)
            source, total, source_key, resumable = self._source(row.name, api_version)
            self._lineage = {**(self._lineage or {}), "resource": row.name, "mode": mode.value}
            self._lineage["base_url"] = hook.settings.base_url
            settings = EngineSettings(
                resource=row.name,
                api_version=api_version,
                mode=mode,
                id_field=row.id_field,
                key_fields=row.key_fields,
                batch_size=self.batch_size,
                max_concurrency=self.max_concurrency,
                validation_workers=self.validation_workers,
                max_batch_bytes=self.max_batch_bytes,
                source_key=source_key,
            )
            engine = UploadEngine(
                settings,
                hook,
                validator=validator,
                checkpoint=self._checkpoint_store(context) if resumable else None,
                log=self.log,
                stop=self._stop,
                total=total,
            )
            result, rejected_at = self._run(engine, source, context)
        finally:
            self._hook = None
            hook.close()
            # An open file or database cursor of a source that stopped early is closed now, not by the GC.
            close = getattr(source, "close", None)
            if close is not None:
                close()
        summary = build_summary(result, settings, rejected_path=rejected_at)
        self._lineage["summary"] = summary
        if result.unread is not None and summary["unread"]["source"] is None:
            summary["unread"]["source"] = (
                _shown(self.path) if self.path is not None else self.source_label or "records"
            )
        for message in result.tally.warnings.messages():
            self.log.warning("%s", message)
        self.log.info("%s", summary_line(summary))
        tally = result.tally
        errors = "\n  ".join(tally.errors[:10])
        if result.unread is not None:
            # The return value is not pushed when the task fails: push the summary so it can be read.
            context["ti"].xcom_push(key="return_value", value=summary)
            raise KlarSourceError(
                unread_message(summary, row.name),
                source=summary["unread"]["source"],
                position=summary["unread"]["after"],
            )
        if exceeds_max_rejected(tally.rejected, tally.records, self.max_rejected):
            where = f" The rejected records are in {summary['rejected_path']}." if self.rejected_path else ""
            raise KlarRejectedRecordsError(
                f"{tally.rejected:,} of {tally.records:,} {row.name} records were rejected; "
                f"{describe_limit(self.max_rejected)}. Every valid record was sent "
                f"({tally.accepted:,} accepted).{where} First errors:\n  {errors}"
            )
        if tally.rejected:
            self.log.warning(
                "%d records were rejected (%s). First errors:\n  %s",
                tally.rejected,
                describe_limit(self.max_rejected),
                errors,
            )
        return summary

    def _run(
        self, engine: UploadEngine, source: Iterable[Any], context: Context
    ) -> tuple[EngineResult, str | None]:
        """Run the engine, writing rejected records if asked; return the result and the rejected file.

        The checkpoint is removed when every record was dealt with (a ``max_rejected`` failure
        included), and when the try fails with no retry left: nothing would resume from it.
        """
        try:
            if self.rejected_path is None:
                result, location = _run_engine(engine, source), None
            else:
                from airflow_provider_klar.upload.rejected import RejectedWriter

                confirmed = engine.load_checkpoint()
                with RejectedWriter(self.rejected_path, conn_id=self.source_conn_id) as writer:
                    if confirmed:
                        copied = carry_over_rejections(
                            self.rejected_path, self.source_conn_id, confirmed, writer
                        )
                        self.log.info(
                            "Copied %d rejected records of earlier tries to the rejected file.", copied
                        )
                    engine.on_rejected = rejected_sink(writer)
                    result = _run_engine(engine, source)
                location = writer.location
        except BaseException:
            if _no_retry_left(context):
                engine.clear_checkpoint()
            raise
        if result.unread is None or _no_retry_left(context):
            # Every record was dealt with (or nothing will resume): a new try starts afresh.
            engine.clear_checkpoint()
        return result, location

    def _validator(self, resource: str, api_version: str) -> Any:
        if not self.validate_locally:
            return None
        from airflow_provider_klar.models import RecordValidator

        try:
            return RecordValidator(resource, api_version, strict=self.strict)
        except ValueError as err:
            raise KlarConfigurationError(f"{err} Or pass validate_locally=False.") from None

    def _source(self, resource: str, api_version: str) -> tuple[Iterable[Any], int | None, str, bool]:
        """Return the records to send, their count when known, the checkpoint's source key, and whether
        positions mean the same records on a retried try."""
        source, total, key, resumable = self._read_source(resource, api_version)
        self._lineage = {
            "files": list(getattr(source, "files", ())),
            "pattern": _shown(self.path) if self.path is not None else None,
            "sql": self.sql,
            "sql_conn_id": self.sql_conn_id,
        }
        if self.transform is None and not self.hash_emails:
            return source, total, key, resumable
        if self.validation_workers > 1:
            self.log.info(
                "validation_workers=%d is not used with transform= or hash_emails=: records are "
                "changed and validated in the task's process.",
                self.validation_workers,
            )
        if self.transform is not None:
            from airflow_provider_klar.upload.transform import apply_transform

            source = apply_transform(iter(source), self.transform)
        if self.hash_emails:
            source = self._hashed_emails(iter(source), resource)
        return source, total, key, resumable

    def _hashed_emails(self, source: Any, resource: str) -> Any:
        """Wrap ``source`` so that orders carry ``customer.emailHash`` instead of ``customer.email``."""
        from airflow_provider_klar.privacy import HashedEmails, salt_from_connection

        if resource != "orders":  # (a templated resource, checked now that it is rendered)
            raise KlarConfigurationError(
                f"hash_emails=True hashes customer.email, which only orders have, not {resource}."
            )
        hook = self._hook
        conn = hook.get_connection(self.klar_conn_id) if hook is not None else None
        self.log.info("Sending customer.emailHash instead of customer.email (hash_emails=True).")
        return HashedEmails(source, salt_from_connection(conn))

    def _read_source(self, resource: str, api_version: str) -> tuple[Iterable[Any], int | None, str, bool]:
        from airflow_provider_klar.upload.sources import iter_path, iter_records

        if self.sql is not None:
            return self._sql_source()
        if self.path is not None:
            source = iter_path(
                self.path,
                file_format=self.file_format,
                resource=resource,
                conn_id=self.source_conn_id,
                api_version=api_version,
                # JSON Lines are checked in one pass over each line's bytes (see upload/prepare.py).
                lazy=True,
            )
            # The fingerprint (names, sizes, change markers) keeps a checkpoint from outliving its files.
            fingerprint = getattr(source, "fingerprint", "")
            return source, None, f"path:{_shown(self.path)}:{fingerprint}", True
        records = self.records
        if records is None:
            raise KlarConfigurationError("records= rendered to None; pass a list of records.")
        total = len(records) if isinstance(records, Sized) else None
        return iter_records(records), total, "records", True

    def _sql_source(self) -> tuple[Iterable[Any], int | None, str, bool]:
        from airflow_provider_klar.upload._sql import SqlSource

        assert self.sql_conn_id is not None  # (checked in __init__)
        source = SqlSource(self.sql or "", self.sql_conn_id, name=self._sql_name)
        ordered = source.ordered
        if self.checkpoint is not None and not ordered:
            # Positions are row numbers: without an ORDER BY a retry may number the rows differently,
            # and skipping "confirmed" rows could skip rows never sent. Sending again is harmless.
            self.log.warning(
                "%s has no ORDER BY of its own, so its rows may come in another order on a retry: a "
                "retried try will send every row again instead of resuming. Add an ORDER BY on a unique "
                "key (e.g. ORDER BY order_id) to resume where a failed try stopped.",
                source.source,
            )
        # The fingerprint (connection id and query text) keeps a checkpoint from outliving its query.
        return source, None, f"sql:{source.fingerprint}", ordered

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Return the run's lineage for Airflow's OpenLineage provider (called by it, not by users).

        Inputs: the files read, or the tables of ``sql`` (the query as the job's ``sql`` facet where
        they cannot be parsed). Output: the Klar resource (namespace ``klar://<host>``), with the
        accepted records as ``outputStatistics.rowCount``. The run facet ``klarUpload`` holds the
        summary's counts. See :mod:`airflow_provider_klar.lineage`.

        :param task_instance: The task instance that ran (unused: the operator noted what it did).
        """
        from airflow_provider_klar.lineage import upload_lineage

        return upload_lineage(self._lineage or {})

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """Return the lineage of a failed run: what was read and sent before it failed, with the counts
        when the upload got as far as its summary.

        :param task_instance: The task instance that ran.
        """
        return self.get_openlineage_facets_on_complete(task_instance)

    def _checkpoint_store(self, context: Context) -> CheckpointStore | None:
        if self.checkpoint is None:
            return None
        from airflow_provider_klar.upload.checkpoint import (
            PathCheckpoint,
            TaskStateCheckpoint,
            VariableCheckpoint,
            checkpoint_key,
        )

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        key = checkpoint_key(ti.dag_id, ti.run_id, ti.task_id, -1 if map_index is None else map_index)
        store: CheckpointStore
        if self.checkpoint in (AUTO_CHECKPOINT, TASK_STATE_CHECKPOINT):
            # Airflow 3.3 added the task state store for exactly this; older Airflow has no such key.
            accessor = context.get("task_state_store")  # type: ignore[attr-defined]
            if accessor is not None:
                store = TaskStateCheckpoint(accessor, fallback=VariableCheckpoint(key))
            elif self.checkpoint == TASK_STATE_CHECKPOINT:
                raise KlarConfigurationError(
                    "checkpoint='task_state_store' needs Airflow 3.3 or later (context['task_state_store']); "
                    "on this Airflow pass checkpoint='auto' or 'variable' (an Airflow Variable) or a folder."
                )
            else:
                store = VariableCheckpoint(key)
        elif self.checkpoint == VARIABLE_CHECKPOINT:
            store = VariableCheckpoint(key)
        else:
            store = PathCheckpoint(self.checkpoint, key, conn_id=self.source_conn_id)
        self.log.info("Progress is checkpointed in %s.", getattr(store, "location", store))
        return store

    def on_kill(self) -> None:
        """Stop sending: no new batch starts; the task's thread raises soon after."""
        if self._stop is not None:
            self._stop.set()
        hook = self._hook
        if hook is not None:
            # No request starts after this; one already on the wire ends when its answer (or the
            # timeout) comes, and is then neither retried nor accounted for.
            hook.close()


def _check_sources(
    records: Any, path: Any, sql: Any, sql_conn_id: str | None, transform: Callable[[Any], Any] | None
) -> None:
    sources = (("records", records), ("path", path), ("sql", sql))
    given = [name for name, value in sources if value is not None]
    if len(given) != 1:
        got = f"{' and '.join(given)}" if given else "none of them"
        raise KlarConfigurationError(
            "KlarUploadOperator needs exactly one of records= (a list, iterable or XComArg of records), "
            f"path= (a file, folder or glob) and sql= (a query, with sql_conn_id=); got {got}."
        )
    if sql is not None and not sql_conn_id:
        raise KlarConfigurationError(
            "sql= needs sql_conn_id=: the Airflow connection of the database to run the query on "
            "(e.g. sql_conn_id='postgres_default')."
        )
    if sql is None and sql_conn_id is not None:
        raise KlarConfigurationError("sql_conn_id= is only used with sql=; remove it or pass the query.")
    if transform is not None and not callable(transform):
        raise KlarConfigurationError(
            "transform= must be a function that takes a record and returns it, got "
            f"{type(transform).__name__}."
        )


def _run_engine(engine: UploadEngine, source: Iterable[Any]) -> EngineResult:
    """Run the engine; when its source stopped being readable, return its account instead of raising.

    The task still fails (see ``execute``), but after writing the summary that says so.
    """
    try:
        return engine.run(source)
    except KlarSourceError:
        if engine.result is None or engine.result.unread is None:
            raise
        return engine.result


def _no_retry_left(context: Context) -> bool:
    """Whether Airflow will not run this task instance again after a failure of this try.

    Airflow 2.11 and 3.x retry a failed try while ``try_number <= max_tries`` (``max_tries`` counts the
    retries; 0 means none). When the numbers cannot be read, a retry is assumed and the checkpoint kept.
    """
    ti = context.get("ti")
    try_number = getattr(ti, "try_number", None)
    max_tries = getattr(ti, "max_tries", None)
    if not isinstance(try_number, int) or not isinstance(max_tries, int):
        return False
    return max_tries == 0 or try_number > max_tries


def unread_message(summary: dict[str, Any], resource: str) -> str:
    """Say that the source stopped being readable: where, what was sent of it, and what to do.

    :param summary: The upload's summary, with its ``unread`` part.
    :param resource: The Klar resource.
    """
    unread = summary["unread"]
    last = f" (the last was {unread['last']})" if unread["last"] else ""
    return (
        f"Reading {unread['source']} stopped after {unread['after']:,} records{last}: {unread['reason']} "
        f"The records read were sent and accounted for ({summary['accepted']:,} {resource} records "
        f"accepted, {summary['rejected']:,} rejected); the rest was not read, so the task fails whatever "
        "max_rejected says. Fix the source and clear the task; with a checkpoint, records already "
        "confirmed are not sent again."
    )


def _check_resource(resource: str, mode: UploadMode) -> Any:
    try:
        row = get_resource(resource)
    except ValueError as err:
        raise KlarConfigurationError(str(err)) from None
    if mode is UploadMode.VALIDATE and not row.has_validate:
        can = ", ".join(name for name, r in RESOURCES.items() if r.has_validate)
        raise KlarConfigurationError(
            f"Klar has no validate endpoint for {row.name}: use mode='upload' (and validate_locally=True "
            f"to check records first). mode='validate' works for {can}."
        )
    return row


def _shown(path: Any) -> str:
    # A URL without credentials or connection ids: ObjectStoragePath's str() holds neither.
    return os.fspath(path) if isinstance(path, os.PathLike) else str(path)
