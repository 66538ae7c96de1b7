from __future__ import annotations

import pickle

import pytest

from airflow_provider_klar.exceptions import (
    KlarError,
    KlarRequestError,
    KlarResponseError,
    KlarTransientError,
)


@pytest.mark.parametrize("cls", [KlarRequestError, KlarTransientError, KlarResponseError])
def test_http_status_survives_pickling(cls: type[KlarRequestError]) -> None:
    err = cls("Klar answered 503 three times; try again later.", http_status=503)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err)
    assert copy.http_status == 503
    assert isinstance(copy, KlarError)


def test_too_many_rejections_fail_without_retries() -> None:
    # Airflow skips the remaining retries for AirflowFailException: re-sending the same data would
    # be rejected again, and would re-send every valid record too.
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_klar.exceptions import KlarRejectedRecordsError

    assert issubclass(KlarRejectedRecordsError, AirflowFailException)
    assert issubclass(KlarRejectedRecordsError, KlarError)


def test_source_error_keeps_where_it_broke_through_pickling() -> None:
    from airflow_provider_klar.exceptions import KlarSourceError

    err = KlarSourceError(
        "orders.json, item 1500: invalid JSON. The rest of orders.json was not read.",
        source="orders.json",
        position=1500,
        line=1500,
        offset=123_456,
    )
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is KlarSourceError
    assert isinstance(copy, KlarError)
    assert str(copy) == str(err)
    assert (copy.source, copy.position, copy.line, copy.offset) == ("orders.json", 1500, 1500, 123_456)
