"""Checkpoint stores: where an upload remembers its confirmed batches so that a retry skips them.

Airflow clears a task's XComs when a new try starts, so the checkpoint lives elsewhere: in Airflow's
task state store (:class:`TaskStateCheckpoint`, Airflow 3.3 and later, made for exactly this: state of
one task instance that survives its retries), in an Airflow Variable (:class:`VariableCheckpoint`, any
Airflow; every worker reaches the metadata database through Airflow) or in a small JSON file
(:class:`PathCheckpoint`, local or object storage). The state is a small JSON object defined by the
engine (source positions as ranges, counts), never record bodies; :func:`bounded_state` keeps its
few free-text parts (the first rejected ids and error lines) within :data:`STATE_BUDGET` bytes.
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
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from airflow_provider_klar.upload.sources import display_name, to_storage_path

__all__ = [
    "STATE_BUDGET",
    "TASK_STATE_KEY",
    "CheckpointStore",
    "PathCheckpoint",
    "TaskStateCheckpoint",
    "VariableCheckpoint",
    "bounded_state",
    "checkpoint_key",
]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PREFIX = "klar_upload_checkpoint"
_DESCRIPTION = "Resume point of a Klar upload (confirmed batches); removed when the task succeeds."

#: The key of the checkpoint in the task state store (which is already scoped to one task instance).
TASK_STATE_KEY = "klar_upload_checkpoint"
#: Most bytes a checkpoint's JSON should take: far below the task state store's 64 KB default cap.
STATE_BUDGET = 16_384
#: Longest id, error line or warning example kept in a checkpoint; longer ones are cut.
_MAX_TEXT = 200


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


def _cut(text: object) -> str:
    text = str(text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "\u2026"


def bounded_state(state: Mapping[str, Any], budget: int = STATE_BUDGET) -> dict[str, Any]:
    """Return ``state`` with its free-text lists cut so that its JSON stays within ``budget`` bytes.

    A checkpoint is position ranges and counts; only the tally's ``rejected_ids``, ``errors`` and
    warning ``examples`` grow with the data (each is already capped in number). Each entry is cut to
    200 characters, then entries are dropped from the end, examples first, until the state fits.
    Counts and ranges are never touched: if they alone exceed ``budget`` the state is returned as is
    and the caller decides (see :class:`TaskStateCheckpoint`).

    :param state: The engine's checkpoint state.
    :param budget: Most bytes of its compact JSON.
    """
    out = dict(state)
    tally = out.get("tally")
    if not isinstance(tally, Mapping):
        return out
    tally = dict(tally)
    out["tally"] = tally
    lists = [name for name in ("rejected_ids", "errors") if isinstance(tally.get(name), list)]
    for name in lists:
        tally[name] = [_cut(item) for item in tally[name]]
    warnings = tally.get("warnings")
    examples: dict[str, str] = {}
    if isinstance(warnings, Mapping) and isinstance(warnings.get("examples"), Mapping):
        warnings = tally["warnings"] = dict(warnings)
        examples = warnings["examples"] = {k: _cut(v) for k, v in warnings["examples"].items()}
    size = len(_encode(out))
    # Drop the least useful text first: examples (the counts stay), then the last error lines and ids.
    while size > budget and examples:
        examples.pop(next(reversed(examples)))
        size = len(_encode(out))
    while size > budget and any(tally[name] for name in lists):
        longest = max(lists, key=lambda name: len(tally[name]))
        tally[longest].pop()
        size = len(_encode(out))
    return out


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


def _state_store_limit() -> int:
    """The task state store's ``[state_store] max_value_storage_bytes`` (0: no limit)."""
    from airflow.configuration import conf

    try:
        return conf.getint("state_store", "max_value_storage_bytes", fallback=65535)
    except (ValueError, TypeError):
        return 65535


def _never_expire() -> timedelta:
    try:
        from airflow.sdk.execution_time.context import NEVER_EXPIRE
    except ImportError:  # before Airflow 3.3 (only the unit tests' stand-in store gets here)
        return timedelta.max
    return NEVER_EXPIRE


class TaskStateCheckpoint:
    """A checkpoint in Airflow's task state store (Airflow 3.3+), under :data:`TASK_STATE_KEY`.

    The store (``context["task_state_store"]``) keeps JSON values per task instance (DAG, run, task,
    map index) across its tries, in the metadata database or the configured state backend, and shows
    them in the UI and REST API. The state is first cut to :data:`STATE_BUDGET` bytes
    (:func:`bounded_state`). If it still exceeds the store's cap (``[state_store]
    max_value_storage_bytes``, 64 KB by default), it goes to ``fallback`` (an Airflow Variable) with a
    warning, for the rest of the try; :meth:`load` looks there when the store holds nothing.

    :param accessor: ``context["task_state_store"]`` of the running task.
    :param fallback: Where a state too large for the store goes.
    :param limit: The store's cap in bytes (0: none); by default read from the Airflow configuration.
    """

    def __init__(
        self, accessor: Any, *, fallback: CheckpointStore | None = None, limit: int | None = None
    ) -> None:
        self.accessor = accessor
        self.fallback = fallback
        self.limit = _state_store_limit() if limit is None else limit
        self._fell_back = False
        # Whether the fallback holds (or held) this task's state, so clear() has to remove it there too.
        self._fallback_used = False

    def __repr__(self) -> str:
        return f"TaskStateCheckpoint({TASK_STATE_KEY!r}, fallback={self.fallback!r})"

    @property
    def location(self) -> str:
        """A readable name for logs."""
        return f"the task state store (key {TASK_STATE_KEY})"

    def load(self) -> dict[str, Any] | None:
        """Return the saved state (from the store, else from the fallback), or ``None``."""
        value = self.accessor.get(TASK_STATE_KEY, None)
        if value is not None:
            if isinstance(value, dict):
                return value
            log.warning(
                "Ignoring the checkpoint in %s: it is not a JSON object; starting from the beginning.",
                self.location,
            )
            return None
        if self.fallback is None:
            return None
        state = self.fallback.load()
        self._fallback_used = state is not None
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the saved state; a state over the store's cap goes to the fallback, with a warning.

        :param state: A small JSON-ready mapping.
        :raises ValueError: When the state exceeds the cap and there is no fallback.
        """
        state = bounded_state(state)
        if not self._fell_back:
            size = len(_encode(state))
            if not self.limit or size <= self.limit:
                # Never expiring: the upload removes it itself when done; a retry may come days later.
                self.accessor.set(TASK_STATE_KEY, state, retention=_never_expire())
                return
            if self.fallback is None:
                raise ValueError(
                    f"The upload checkpoint takes {size} bytes, more than the task state store's "
                    f"max_value_storage_bytes={self.limit}; raise [state_store] max_value_storage_bytes "
                    "or pass checkpoint='variable' or a folder."
                )
            log.warning(
                "The upload checkpoint takes %d bytes, more than the task state store's "
                "max_value_storage_bytes=%d; keeping it in %s instead for the rest of this try. "
                "Raise [state_store] max_value_storage_bytes or pass checkpoint='variable' to silence this.",
                size,
                self.limit,
                getattr(self.fallback, "location", repr(self.fallback)),
            )
            self._fell_back = self._fallback_used = True
            # An older, smaller state left in the store would be read first by the next try.
            self.accessor.delete(TASK_STATE_KEY)
        assert self.fallback is not None
        self.fallback.save(state)

    def clear(self) -> None:
        """Remove the state from the store and from the fallback (no error when there is none)."""
        self.accessor.delete(TASK_STATE_KEY)
        if self.fallback is not None and self._fallback_used:
            self.fallback.clear()
