"""Hashed e-mail addresses: send Klar ``customer.emailHash`` instead of the customer's address.

Klar links orders of the same customer by e-mail. Shops that must not pass e-mail addresses on send
``emailHash`` instead: the hex SHA-1 of a salt issued by Klar followed by the trimmed, lower-cased
address (the rule Klar's Magento module applies), and no ``email``.

- :func:`hash_email` computes the hash, for use in your own code;
- ``KlarUploadOperator(hash_emails=True)`` applies it to every order before validation, with the salt
  from the ``klar`` connection (the **E-mail hash salt** field, Extra key :data:`SALT_EXTRA`), which is
  registered with Airflow's secret masker and never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.upload._record import SourceRecord, parsed

__all__ = ["SALT_EXTRA", "HashedEmails", "hash_email", "hash_record_email", "salt_from_connection"]

#: The connection's Extra key holding the salt. Its name contains "secret" so that Airflow hides its
#: value wherever it shows a connection's Extra (the UI, ``airflow connections get``), as it does for
#: passwords and tokens.
SALT_EXTRA = "email_hash_secret"


def hash_email(email: str, salt: str) -> str:
    """Return Klar's ``emailHash`` of an e-mail address: hex SHA-1 of ``salt`` + the trimmed, lower-cased
    address.

    >>> hash_email("  Jane.Doe@Example.COM ", "klar-salt") == hash_email("jane.doe@example.com", "klar-salt")
    True

    :param email: The address as the shop stored it; surrounding whitespace and case do not matter.
    :param salt: The salt Klar issued for the store (text, used as is: it is not trimmed).
    :raises TypeError: When ``email`` or ``salt`` is not a string.
    """
    if not isinstance(email, str) or not isinstance(salt, str):
        raise TypeError("hash_email takes the e-mail address and the salt as strings.")
    # SHA-1 because Klar's rule says so: this is an identifier shared with Klar, not a password store.
    return hashlib.sha1((salt + email.strip().lower()).encode("utf-8"), usedforsecurity=False).hexdigest()


def hash_record_email(record: Mapping[str, Any], salt: str) -> Mapping[str, Any]:
    """Return ``record`` with ``customer.email`` replaced by ``customer.emailHash``.

    The record itself is not changed: a changed copy is returned, or ``record`` as it is when it has no
    e-mail address to hash (no customer, no ``email``, or one that is not text). A blank address is
    dropped without a hash. An ``emailHash`` already present is replaced by the hash of ``email``.

    :param record: An order with Klar's camelCase names.
    :param salt: The salt Klar issued.
    """
    customer = record.get("customer")
    if not isinstance(customer, Mapping) or "email" not in customer:
        return record
    email = customer["email"]
    if not isinstance(email, str):
        return record  # not an address: validation rejects it with the field's path
    hashed = {key: value for key, value in customer.items() if key != "email"}
    if email.strip():
        hashed["emailHash"] = hash_email(email, salt)
    return {**record, "customer": hashed}


def salt_from_connection(conn: Any) -> str:
    """Return the salt stored in a ``klar`` connection, registered with Airflow's secret masker.

    :param conn: The Airflow connection.
    :raises KlarConfigurationError: When the connection holds no salt.
    """
    extra = conn.extra_dejson if conn is not None else {}
    salt = extra.get(SALT_EXTRA) if isinstance(extra, Mapping) else None
    if not isinstance(salt, str) or not salt:
        raise KlarConfigurationError(
            f"hash_emails=True needs the salt Klar issued for e-mail hashes in the connection "
            f"{getattr(conn, 'conn_id', None)!r}: fill in its 'E-mail hash salt' field (Extra key "
            f"{SALT_EXTRA!r}), or ask Klar's support for the salt of your store."
        )
    from airflow.providers.common.compat.sdk import mask_secret

    # Registered before anything could log it: from here on Airflow's masker redacts it everywhere.
    mask_secret(salt)
    return salt


class HashedEmails(Iterator[SourceRecord]):
    """A source whose orders carry ``customer.emailHash`` instead of ``customer.email``.

    Records it changes lose their line's bytes (``raw``), so they are encoded from the changed dict,
    never sent as read; records without an address keep them.

    :param source: The records as read (and transformed).
    :param salt: The salt Klar issued.
    """

    def __init__(self, source: Iterator[SourceRecord], salt: str) -> None:
        self._source = source
        self._salt = salt

    def __repr__(self) -> str:
        return "HashedEmails(<salt hidden>)"

    def __iter__(self) -> HashedEmails:
        return self

    def __next__(self) -> SourceRecord:
        src = parsed(next(self._source))  # a line or array item read lazily is parsed here
        record = src.record
        if src.error is not None:
            return src
        dump = getattr(record, "model_dump", None)
        if callable(dump):  # a model given in records=: hashed as the dict Klar would get
            record = dump(mode="json", by_alias=True, exclude_none=True)
        if not isinstance(record, Mapping):
            return src  # not a record: the upload rejects it with the reason
        hashed = hash_record_email(record, self._salt)
        if hashed is src.record:
            return src
        return SourceRecord(src.position, src.source, src.line, hashed)

    def close(self) -> None:
        """Close the source (an open file, a database cursor), if it can be."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
