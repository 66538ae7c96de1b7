"""E-mail hashing: Klar's rule, the record rewrite, the source wrapper and the salt's handling."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.privacy import (
    SALT_EXTRA,
    HashedEmails,
    hash_email,
    hash_record_email,
    salt_from_connection,
)
from airflow_provider_klar.upload._record import SourceRecord

# Computed outside Python, with coreutils: printf '<salt><address>' | sha1sum
KNOWN = [
    ("klar-salt-2024", "jane.doe@example.com", "18cabc390e5b0a80d5229b74accd52e98a98023a"),
    ("S3cr3t!  ", "max.mustermann+shop@beispiel.de", "3b31f63abf83cfacebc11af590131377095b6d2c"),
    ("klar-salt-2024", "", "0a6f225c24f1889a064f1514fd028af1eea7920d"),
]


@pytest.mark.parametrize(("salt", "email", "expected"), KNOWN)
def test_known_vectors(salt: str, email: str, expected: str) -> None:
    assert hash_email(email, salt) == expected


def test_the_address_is_trimmed_and_lower_cased_the_salt_is_not() -> None:
    expected = "18cabc390e5b0a80d5229b74accd52e98a98023a"
    assert hash_email("  Jane.Doe@Example.COM\t\n", "klar-salt-2024") == expected
    # The salt is used as Klar issued it: trailing spaces in it count (second vector above).
    assert hash_email("max.mustermann+shop@beispiel.de", "S3cr3t!") != KNOWN[1][2]
    # Non-ASCII letters are lower-cased too, and the text is hashed as UTF-8.
    reference = hashlib.new("sha1", b"salt" + "jürgen@müller.de".encode()).hexdigest()
    assert hash_email("JÜRGEN@Müller.DE", "salt") == reference


def test_anything_but_text_is_refused() -> None:
    with pytest.raises(TypeError, match="as strings"):
        hash_email(None, "salt")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="as strings"):
        hash_email("a@b.c", b"salt")  # type: ignore[arg-type]


def test_a_record_gets_the_hash_and_loses_the_address_without_being_changed_itself() -> None:
    order = {
        "id": "ORD-1",
        "customer": {"id": "C1", "email": " Jane.Doe@example.com", "tags": ["vip"]},
        "lineItems": [],
    }
    hashed = hash_record_email(order, "klar-salt-2024")

    assert hashed == {
        "id": "ORD-1",
        "customer": {"id": "C1", "tags": ["vip"], "emailHash": "18cabc390e5b0a80d5229b74accd52e98a98023a"},
        "lineItems": [],
    }
    assert order["customer"]["email"] == " Jane.Doe@example.com"  # the caller's dict is untouched


def test_records_without_an_address_pass_unchanged() -> None:
    no_customer = {"id": "A"}
    hash_only = {"id": "B", "customer": {"emailHash": "abc"}}
    not_text = {"id": "C", "customer": {"email": 42}}
    for record in (no_customer, hash_only, not_text):
        assert hash_record_email(record, "s") is record
    # A blank address is dropped (nothing to hash), and a hash already there is replaced by the computed one.
    assert hash_record_email({"id": "D", "customer": {"email": "  "}}, "s") == {"id": "D", "customer": {}}
    both = hash_record_email({"id": "E", "customer": {"email": "a@b.c", "emailHash": "old"}}, "s")
    assert both == {"id": "E", "customer": {"emailHash": hash_email("a@b.c", "s")}}


def test_the_source_wrapper_drops_the_line_bytes_only_of_records_it_changed() -> None:
    from airflow_provider_klar.models import Order

    with_email = {"id": "A", "customer": {"email": "a@b.c"}}
    without = {"id": "B"}
    model = Order.model_validate({"id": "M", "customer": {"email": "M@B.C"}})
    read = [
        SourceRecord(0, "x.jsonl", 1, with_email, None, b'{"id":"A","customer":{"email":"a@b.c"}}\n'),
        SourceRecord(1, "x.jsonl", 2, without, None, b'{"id":"B"}\n'),
        SourceRecord(2, "x.jsonl", 3, None, "line 3: invalid JSON", '{"id": "X", "customer": {"em'),
        SourceRecord(3, "records", 3, model),
    ]

    out = list(HashedEmails(iter(read), "s"))

    assert out[0].record == {"id": "A", "customer": {"emailHash": hash_email("a@b.c", "s")}}
    assert out[0].raw is None  # re-encoded from the dict, never the clear line sent as read
    assert (out[0].position, out[0].source, out[0].line) == (0, "x.jsonl", 1)
    assert out[1] is read[1]  # unchanged, keeps its bytes (the fast path)
    assert out[2] is read[2]  # not read: nothing to hash
    assert out[3].record["customer"] == {"emailHash": hash_email("m@b.c", "s")}
    assert "pepper-42" not in repr(HashedEmails(iter([]), "pepper-42"))


class _Conn:
    def __init__(self, extra: dict[str, Any]) -> None:
        self.conn_id = "klar_default"
        self.extra_dejson = extra


def test_the_salt_comes_from_the_connection_and_is_masked_from_then_on() -> None:
    from airflow.providers.common.compat.sdk import redact

    salt = "pepper-7f3a9c1e5b"
    assert salt_from_connection(_Conn({SALT_EXTRA: salt})) == salt
    # (Only the salt is checked: on 2.11 other tests' short secrets are masked in the same text too.)
    assert salt not in redact(f"hashing with {salt}")
    assert "***" in redact(f"hashing with {salt}")


def test_a_missing_salt_says_where_it_goes() -> None:
    with pytest.raises(KlarConfigurationError) as caught:
        salt_from_connection(_Conn({}))
    assert "fill in its 'E-mail hash salt' field (Extra key 'email_hash_secret')" in str(caught.value)
    assert "'klar_default'" in str(caught.value)


def test_airflow_hides_the_extra_key_wherever_it_shows_a_connections_extra() -> None:
    try:
        from airflow.sdk._shared.secrets_masker import should_hide_value_for_key
    except ImportError:  # Airflow 2
        from airflow.utils.log.secrets_masker import should_hide_value_for_key

    assert should_hide_value_for_key(SALT_EXTRA)


def test_the_operator_refuses_hash_emails_for_resources_without_customers() -> None:
    from airflow_provider_klar.operators.klar import KlarUploadOperator

    with pytest.raises(KlarConfigurationError, match="only orders have, not refunds"):
        KlarUploadOperator(task_id="t", resource="refunds", records=[], hash_emails=True)
