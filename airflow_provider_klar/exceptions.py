"""Every exception the provider raises. Each message says what to do next.

All derive from :class:`KlarError`, itself an ``AirflowException``, so ``except KlarError`` catches
everything Klar-specific and Airflow treats each as an ordinary task failure.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class KlarError(AirflowException):
    """Base class of every error raised by airflow-provider-klar."""


class KlarConfigurationError(KlarError, AirflowFailException):
    """The connection or the task's arguments are wrong; nothing was sent.

    Examples: an unknown resource (also one a template rendered), both or neither of ``records`` and
    ``path``, a malformed API version, a plain ``http://`` URL to a host that is not loopback, a
    connection without a token. The task fails without retries: the next try would fail the same way.
    Fix the DAG or the connection, then clear the task.
    """


class KlarSourceNotFoundError(KlarError):
    """No input file at the task's ``path`` (no match for a pattern, an empty folder): nothing was sent.

    Unlike a configuration error this one is retried when the task has ``retries``: an export may land
    a little later than the DAG run starts.
    """


class KlarAuthError(KlarError):
    """Klar answered 401 or 403: the token of the connection is missing, wrong or revoked."""


class KlarNotFoundError(KlarError):
    """Klar answered 404: the base URL, the resource or the API version does not exist."""


class _HttpStatusError(KlarError):
    """A Klar error that carries the HTTP status of Klar's answer, when there was one."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only status would be lost by the default pickling of exceptions (args only).
        return (_rebuild, (type(self), str(self), self.http_status))


def _rebuild(cls: type[_HttpStatusError], message: str, http_status: int | None) -> _HttpStatusError:
    return cls(message, http_status=http_status)


class KlarRequestError(_HttpStatusError):
    """Klar refused a request as a whole (400, 413, 422 or another final 4xx) in a way no record explains."""


class KlarTransientError(_HttpStatusError):
    """Klar stayed unreachable or overloaded (network errors, 408, 425, 429, 5xx) after every retry."""


class KlarResponseError(_HttpStatusError):
    """Klar answered in a shape the provider cannot map to records; nothing is counted as accepted."""


class KlarRejectedRecordsError(KlarError, AirflowFailException):
    """More records were rejected than ``max_rejected`` allows; every valid record was still sent.

    The task fails without retries: the same data would be rejected again. Fix the records listed in
    the message (or raise ``max_rejected``) and clear the task.
    """


class KlarSourceError(KlarError):
    """A source stopped being readable midway: what came before was read, the rest was not.

    Raised by the readers for a JSON array with a syntax error, a gzip file cut short, an error of the
    object storage while reading, a file that is not of its format at all. A malformed line of a JSON
    Lines or CSV file is not this error: it is rejected as that record and the file is read on. The
    message names the file, where it broke (line, item index or byte offset) and says that the rest of
    the file was not read.

    :param message: The whole message, for people.
    :param source: The file (display name, no credentials), or ``"records"``.
    :param position: The position in the whole source the next record would have had (the count of
        records read before the break, over every file).
    :param line: The 1-based line (JSON Lines, CSV) or 0-based item index (JSON arrays) where it broke,
        when known.
    :param offset: The byte offset in the (decompressed) file where it broke, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        position: int | None = None,
        line: int | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.position = position
        self.line = line
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes would be lost by the default pickling of exceptions (args only).
        return (_rebuild_source_error, (str(self), self.source, self.position, self.line, self.offset))


def _rebuild_source_error(
    message: str, source: str | None, position: int | None, line: int | None, offset: int | None
) -> KlarSourceError:
    return KlarSourceError(message, source=source, position=position, line=line, offset=offset)


class KlarUploadStoppedError(KlarError):
    """The upload was asked to stop (the task was killed, timed out or marked in the UI) and stopped.

    No new batch was started after the request. Errors of requests that stopping itself cut short
    (the hook's client is closed under them) are chained to this one, never raised in its place. With
    ``retries`` and a checkpoint, the next try resumes after the batches Klar confirmed.
    """


class KlarSubmissionFailedError(KlarError):
    """Klar's status shows that the latest submission after ``since`` failed."""
