"""Checkpoint stores: where an upload remembers its confirmed batches so that a retry skips them.

Airflow clears a task's XComs when a new try starts, so the checkpoint lives elsewhere: in an Airflow
Variable (:class:`VariableCheckpoint`, works on every executor because every worker reaches the
metadata database through Airflow) or in a small JSON file (:class:`PathCheckpoint`, local or object
storage). The state is a small JSON object defined by the operator (batch numbers as ranges, counts),
never record bodies.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from airflow_provider_klar.upload.sources import display_name, to_storage_path

__all__ = ["CheckpointStore", "PathCheckpoint", "VariableCheckpoint", "checkpoint_key"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PREFIX = "klar_upload_checkpoint"
_DESCRIPTION = "Resume point of a Klar upload (confirmed batches); removed when the task succeeds."


def checkpoint_key(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """Return a key naming one task instance's checkpoint, safe as a Variable key and a file name.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_`` (run ids hold ``:`` and
    ``+``, which would break the Variable's URL); a hash of the exact ids keeps distinct tasks distinct
    after that, and long names are shortened so the key stays under Airflow's 250 characters.

    :param dag_id: The DAG's id.
    :param run_id: The DAG run's id.
    :param task_id: The task's id.
    :param map_index: The map index (``-1`` or ``None`` for an unmapped task).
    """
    index = -1 if map_index is None else int(map_index)
    exact = json.dumps([dag_id, run_id, task_id, index])
    digest = hashlib.sha256(exact.encode()).hexdigest()[:12]
    readable = _UNSAFE.sub("_", f"{dag_id}.{task_id}.{index}.{run_id}")[:180]
    return f"{_PREFIX}.{readable}.{digest}"


@runtime_checkable
class CheckpointStore(Protocol):
    """Load, save and clear one small JSON state; ``load`` returns ``None`` when there is none."""

    def load(self) -> dict[str, Any] | None:
        """Return the saved state, or ``None``."""
        ...

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state.

        :param state: A small JSON-ready mapping.
        """
        ...

    def clear(self) -> None:
        """Remove the saved state (no error when there is none)."""
        ...


def _decode(text: str | bytes | None, where: str) -> dict[str, Any] | None:
    if text is None or text in {"", b""}:
        return None
    try:
        state = json.loads(text)
    except ValueError:
        # A damaged checkpoint only costs re-sending batches (Klar upserts by id), never losing them.
        log.warning(
            "Ignoring the checkpoint at %s: it is not valid JSON; starting from the beginning.", where
        )
        return None
    if not isinstance(state, dict):
        log.warning(
            "Ignoring the checkpoint at %s: it is not a JSON object; starting from the beginning.", where
        )
        return None
    return state


def _encode(state: Mapping[str, Any]) -> str:
    return json.dumps(dict(state), separators=(",", ":"), sort_keys=True)


def _in_task_sdk_runtime() -> bool:
    """Whether this process is an Airflow 3 task process, which reaches Variables through the task SDK."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


class VariableCheckpoint:
    """A checkpoint in the Airflow Variable ``key`` (see :func:`checkpoint_key`).

    Inside a running task this uses the Variable API of the task SDK (Airflow 3) or the ORM
    (Airflow 2). Outside a task on Airflow 3 (a script, a test) the task SDK cannot write Variables,
    so the metadata database is used directly, as ``airflow variables set`` does.

    :param key: The Variable's key.
    """

    def __init__(self, key: str) -> None:
        if not key or _UNSAFE.search(key):
            raise ValueError(f"Checkpoint key {key!r} must be non-empty and use only A-Z a-z 0-9 . _ -.")
        self.key = key

    def __repr__(self) -> str:
        return f"VariableCheckpoint({self.key!r})"

    @property
    def location(self) -> str:
        """A readable name for logs."""
        return f"Airflow Variable {self.key}"

    def load(self) -> dict[str, Any] | None:
        """Return the saved state, or ``None``."""
        if _in_task_sdk_runtime():
            from airflow.providers.common.compat.sdk import Variable

            value = Variable.get(self.key, default=None)
        else:
            from airflow.models.variable import Variable as OrmVariable

            value = OrmVariable.get(self.key, default_var=None)
        return _decode(value, self.location)

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state.

        :param state: A small JSON-ready mapping.
        """
        if _in_task_sdk_runtime():
            from airflow.providers.common.compat.sdk import Variable

            Variable.set(self.key, _encode(state), description=_DESCRIPTION)
        else:
            from airflow.models.variable import Variable as OrmVariable

            OrmVariable.set(self.key, _encode(state), description=_DESCRIPTION)

    def clear(self) -> None:
        """Delete the Variable (no error when there is none)."""
        if _in_task_sdk_runtime():
            from airflow.providers.common.compat.sdk import Variable

            Variable.delete(self.key)
        else:
            from airflow.models.variable import Variable as OrmVariable

            OrmVariable.delete(self.key)


class PathCheckpoint:
    """A checkpoint in the JSON file ``<base>/<key>.json``, local or in object storage.

    Local files are replaced atomically (written beside, then renamed), so a worker killed mid-write
    leaves the previous checkpoint intact. Object stores replace an object atomically on upload.

    :param base: The folder: a local path, a URL (``s3://bucket/checkpoints``) or an ``ObjectStoragePath``.
    :param key: The file's name without ``.json`` (see :func:`checkpoint_key`).
    :param conn_id: The Airflow connection for the object storage, when the URL does not name one.
    """

    def __init__(self, base: str | Any, key: str, *, conn_id: str | None = None) -> None:
        if not key or _UNSAFE.search(key):
            raise ValueError(f"Checkpoint key {key!r} must be non-empty and use only A-Z a-z 0-9 . _ -.")
        self.key = key
        self.path = to_storage_path(base, conn_id) / f"{key}.json"

    def __repr__(self) -> str:
        return f"PathCheckpoint({self.location!r})"

    @property
    def location(self) -> str:
        """The file's path or URL (without connection id)."""
        return display_name(self.path)

    @property
    def _local(self) -> bool:
        return self.path.protocol in ("", "file", "local")

    def load(self) -> dict[str, Any] | None:
        """Return the saved state, or ``None``."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return _decode(data, self.location)

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state.

        :param state: A small JSON-ready mapping.
        """
        data = _encode(state).encode()
        if self._local:
            folder = os.path.dirname(self.path.path)
            os.makedirs(folder, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{self.key}.", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.path.path)
            except BaseException:
                os.unlink(temporary)
                raise
            return
        with contextlib.suppress(FileExistsError, NotImplementedError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(data)

    def clear(self) -> None:
        """Delete the file (no error when there is none)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
