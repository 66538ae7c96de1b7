"""The upload pipeline's parts: source readers, the rejected-records writer and checkpoint stores.

Importing this package does no I/O; every reader opens its files only when iterated.
"""

from __future__ import annotations

from airflow_provider_klar.upload.checkpoint import (
    CheckpointStore,
    PathCheckpoint,
    TaskStateCheckpoint,
    VariableCheckpoint,
    checkpoint_key,
)
from airflow_provider_klar.upload.rejected import RejectedWriter
from airflow_provider_klar.upload.sources import (
    FileSource,
    SourceRecord,
    detect_format,
    iter_path,
    iter_records,
    resolve_paths,
)

__all__ = [
    "CheckpointStore",
    "FileSource",
    "PathCheckpoint",
    "RejectedWriter",
    "SourceRecord",
    "TaskStateCheckpoint",
    "VariableCheckpoint",
    "checkpoint_key",
    "detect_format",
    "iter_path",
    "iter_records",
    "resolve_paths",
]
