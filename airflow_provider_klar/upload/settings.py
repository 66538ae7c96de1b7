"""What the upload engine needs and gives: its settings, result, and the interfaces of its partners.

Kept apart from :mod:`.engine` so that callers (the operator, the report, tests) can describe an upload
without the machinery that runs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from airflow_provider_klar.results import KlarBatchResult
from airflow_provider_klar.upload.accounting import Tally
from airflow_provider_klar.upload.batching import DEFAULT_MAX_BATCH_BYTES

#: Version of the checkpoint layout; a checkpoint of another layout is ignored.
CHECKPOINT_FORMAT = 1
#: Least seconds between two checkpoint saves while batches keep completing. Besides these, the engine
#: saves whenever sending one more batch would leave more than ``max_concurrency + 1`` sent batches
#: outside the saved checkpoint: all a retry re-sends after a killed try. (An interval alone let a
#: retry re-send up to 18 batches of 1000, measured under a real scheduler.)
CHECKPOINT_INTERVAL = 2.0


class UploadMode(str, Enum):
    """Where batches go."""

    #: ``POST /<version>/<resource>/json``: Klar stores the records.
    UPLOAD = "upload"
    #: ``POST /<version>/<resource>/validate``: Klar checks the records and stores nothing.
    VALIDATE = "validate"


class BatchSender(Protocol):
    """What the engine needs of :class:`~airflow_provider_klar.hooks.klar.KlarHook`."""

    def upload(
        self, resource: str, records: Sequence[Mapping[str, Any]], *, encoded: Sequence[bytes] | None = None
    ) -> KlarBatchResult: ...

    def validate(
        self, resource: str, records: Sequence[Mapping[str, Any]], *, encoded: Sequence[bytes] | None = None
    ) -> KlarBatchResult: ...


class LogLike(Protocol):
    """What the engine needs of a logger (``logging.Logger``, Airflow's task logger)."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


class CheckpointStore(Protocol):
    """What the engine needs of a checkpoint store (``VariableCheckpoint``, ``PathCheckpoint``)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    """What to send where, and how.

    :param resource: The Klar resource, e.g. ``orders``.
    :param api_version: The API version the batches go to (recorded in checkpoints and the summary).
    :param mode: Upload (store) or validate (check only).
    :param id_field: The field that names a record (``id``, or ``orderId`` for cost resources).
    :param key_fields: The fields of a record's upsert key (``KlarResource.key_fields``); empty when
        the id is the key. Two records with the same key are versions of one record: the later wins.
    :param batch_size: Most records per request (1 to 1000).
    :param max_concurrency: Most requests in flight at once.
    :param max_batch_bytes: Most bytes per request body.
    :param source_key: Identifies the source (the path, or ``records``); a checkpoint of another source
        is not used.
    :param checkpoint_interval: Least seconds between checkpoint saves.
    :param validation_workers: Processes that parse, validate and encode the records of JSON Lines
        files (see :mod:`.parallel`); 1 does it in the calling thread.
    """

    resource: str
    api_version: str
    mode: UploadMode = UploadMode.UPLOAD
    id_field: str = "id"
    key_fields: tuple[str, ...] = ()
    batch_size: int = 1000
    max_concurrency: int = 4
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    source_key: str = "records"
    checkpoint_interval: float = CHECKPOINT_INTERVAL
    validation_workers: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.validation_workers, bool) or not isinstance(self.validation_workers, int):
            raise ValueError(f"validation_workers must be an integer, got {self.validation_workers!r}.")
        if not 1 <= self.validation_workers <= 32:
            raise ValueError(f"validation_workers must be from 1 to 32, got {self.validation_workers}.")
        if isinstance(self.max_concurrency, bool) or not isinstance(self.max_concurrency, int):
            raise ValueError(f"max_concurrency must be an integer, got {self.max_concurrency!r}.")
        if not 1 <= self.max_concurrency <= 32:
            raise ValueError(f"max_concurrency must be from 1 to 32, got {self.max_concurrency}.")


@dataclass(frozen=True)
class Unread:
    """Where reading the source failed: the records after that point were not read, hence not sent.

    :param source: The file being read (as the reader's error names it, else the file of the last record
        read), ``"records"`` for ``records=``, or ``None`` when nothing tells.
    :param after: How many records (positions) were read from the whole source before it failed.
    :param last: Where the last record read came from (``line 1500 of /d/orders.jsonl``), if any.
    :param reason: What went wrong, as the reader or the failing iterable said it.
    """

    source: str | None
    after: int
    last: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, for the summary."""
        return {"source": self.source, "after": self.after, "last": self.last, "reason": self.reason}


@dataclass(frozen=True)
class EngineResult:
    """What an upload did, across tries.

    :param tally: The counts of every try that contributed (a resumed try adds to the earlier ones).
    :param resumed_records: Records this try skipped because an earlier try had finished with them.
    :param skipped_batches: Batches earlier tries had sent and this try did not send again.
    :param started_at: When this try started (UTC).
    :param finished_at: When it finished (UTC).
    :param seconds: This try's duration in seconds.
    :param unread: Set when reading the source failed part way: what was read was sent and accounted
        for, the rest was not read (see :class:`Unread`). ``UploadEngine.run`` then raised
        ``KlarSourceError`` and this result is its ``result`` attribute.
    :param held_back: Batches this try held back until an earlier unanswered batch that carried one of
        their keys was answered.
    """

    tally: Tally
    resumed_records: int
    skipped_batches: int
    started_at: datetime
    finished_at: datetime
    seconds: float
    unread: Unread | None = None
    held_back: int = 0

    @property
    def complete(self) -> bool:
        """Whether the whole source was read (every record is accounted for)."""
        return self.unread is None
