"""The upload pipeline's parts: source readers, the rejected-records writer and checkpoint stores.

Importing this package does no I/O; every reader opens its files only when iterated. The names below
are imported lazily: validation worker processes import modules of this package (the JSON Lines
parser, the per-record step) in a fresh interpreter where importing Airflow fails (Airflow's task
runner hides the metadata database from its task processes), so the package itself imports nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "CheckpointStore": "checkpoint",
    "PathCheckpoint": "checkpoint",
    "TaskStateCheckpoint": "checkpoint",
    "VariableCheckpoint": "checkpoint",
    "checkpoint_key": "checkpoint",
    "RejectedWriter": "rejected",
    "FileSource": "sources",
    "SourceRecord": "sources",
    "detect_format": "sources",
    "iter_path": "sources",
    "iter_records": "sources",
    "resolve_paths": "sources",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
