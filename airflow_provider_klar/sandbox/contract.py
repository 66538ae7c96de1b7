"""Klar's wire contract as the sandbox reads it from ``klar-api.md``: paths, versions, envelopes, codes.

This table is the sandbox's own and deliberately does not import the provider's ``resources.py``: the
sandbox is the other side of the wire, so a wrong path, envelope, code or id field in the provider's
table makes the end-to-end tests fail instead of passing by construction (``tests/unit/
test_sandbox_contract.py`` compares the two). The only thing the sandbox shares with the provider is the
models' validation rules (:mod:`airflow_provider_klar.models`).

Where ``klar-api.md`` is uncertain, this table takes the reading it calls likely and the sandbox offers a
switch for the other (the cost resources' envelope; ``/state`` beside ``/status``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

#: The most objects Klar takes in one request ("At most 1000 objects per request").
MAX_OBJECTS = 1000

#: The two shapes of a request body: a bare JSON array, or ``{"items": [...]}``.
Envelope = Literal["array", "items"]
ENVELOPES: tuple[Envelope, ...] = ("array", "items")

#: The query flags that choose Klar's error shapes (``klar-api.md``, "Responses").
FAILED_ORDER_IDS = "failedOrderIds"
NEW_ERRORS = "newErrors"

_VALID: Mapping[str, str] = MappingProxyType({"status": "VALID"})


@dataclass(frozen=True)
class Success:
    """Klar's answer to a batch whose every object is valid.

    :param code: The HTTP code the help pages name.
    :param body: The JSON body (``{"status": "VALID"}``), or ``None`` for an empty body.
    """

    code: int
    body: Mapping[str, str] | None


@dataclass(frozen=True)
class ResourceContract:
    """What Klar's API does for one resource, independent of any client.

    :param name: The path segment (``orders``, ``logistics-costs``...).
    :param versions: The API versions seen, oldest first; each has its own ``/json`` (and ``/validate``).
    :param validate: Success answer of ``POST /<version>/<name>/validate``, or ``None`` when Klar has no
        such route (a 404).
    :param upload: Success answer of ``POST /<version>/<name>/json``.
    :param envelope: The body shape Klar expects by default (``array`` or ``items``).
    :param envelope_certain: ``False`` where ``klar-api.md`` says the help pages disagree on the shape;
        only there may a test switch the sandbox to the other one.
    :param id_field: The field naming an object (errors' ``id``; ``/_sandbox/records/<name>/<id>``).
    :param key_fields: The fields that together make an object's upsert key ("idempotent by id").
    :param flags: The query flags the resource understands; ``newErrors`` is always on for
        ``transaction-costs`` (``flat_by_default``).
    :param flat_by_default: Whether rejections come in the flat shape without ``newErrors=true``.
    :param partial_success: Whether ``/json`` with ``failedOrderIds=true`` stores the valid objects of a
        mixed batch and answers 207 ``PARTIALLY_VALID``.
    :param status_aliases: Paths that also serve the status object (the help page also names ``/state``).
    """

    name: str
    versions: tuple[str, ...]
    validate: Success | None
    upload: Success
    envelope: Envelope
    envelope_certain: bool
    id_field: str
    key_fields: tuple[str, ...]
    flags: frozenset[str]
    flat_by_default: bool = False
    partial_success: bool = False
    status_aliases: tuple[str, ...] = ()

    @property
    def newest_version(self) -> str:
        """The newest API version seen."""
        return self.versions[-1]

    @property
    def modes(self) -> tuple[str, ...]:
        """``upload`` (``/json``), plus ``validate`` where Klar has that route."""
        return ("upload", "validate") if self.validate is not None else ("upload",)

    def path(self, version: str, mode: str) -> str:
        """Return the path of ``/json`` (``mode="upload"``) or ``/validate`` at ``version``."""
        return f"/{version}/{self.name}/{'validate' if mode == 'validate' else 'json'}"

    @property
    def status_path(self) -> str:
        """``GET /<name>/status``: no version segment."""
        return f"/{self.name}/status"

    def success(self, mode: str) -> Success:
        """Return the success answer of ``mode`` (``upload`` or ``validate``).

        :raises KeyError: For ``validate`` on a resource without ``/validate``.
        """
        found = self.upload if mode == "upload" else self.validate
        if found is None:
            raise KeyError(f"{self.name} has no /validate route")
        return found

    def key_of(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """Return the upsert key of ``record`` (missing fields as ``None``)."""
        return tuple(record.get(name) for name in self.key_fields)


def _contract(**fields: Any) -> ResourceContract:
    return ResourceContract(**fields)


CONTRACT: Mapping[str, ResourceContract] = MappingProxyType(
    {
        c.name: c
        for c in (
            _contract(
                name="orders",
                versions=("12.2022", "07.2025"),
                validate=Success(201, _VALID),
                upload=Success(201, _VALID),
                envelope="array",
                envelope_certain=True,
                id_field="id",
                key_fields=("id",),
                flags=frozenset({FAILED_ORDER_IDS, NEW_ERRORS}),
                partial_success=True,
            ),
            _contract(
                name="refunds",
                versions=("12.2022",),
                validate=Success(200, _VALID),
                upload=Success(201, None),
                envelope="array",
                envelope_certain=True,
                id_field="id",
                key_fields=("id",),
                flags=frozenset({NEW_ERRORS}),
            ),
            _contract(
                name="cogs",
                versions=("12.2022",),
                validate=Success(202, _VALID),
                upload=Success(201, None),
                # "The help text says array; Klar's own example wraps it."
                envelope="items",
                envelope_certain=False,
                id_field="orderId",
                # One COGS object per order line: the line item (or, without one, the SKU) is part of
                # the key, so two lines of one order do not overwrite each other.
                key_fields=("orderId", "lineItemId", "sku"),
                flags=frozenset({NEW_ERRORS}),
            ),
            _contract(
                name="logistics-costs",
                versions=("04.2024",),
                validate=Success(202, _VALID),
                upload=Success(201, None),
                envelope="items",
                envelope_certain=False,
                id_field="orderId",
                key_fields=("orderId",),
                flags=frozenset({NEW_ERRORS}),
                status_aliases=("/logistics-costs/state",),
            ),
            _contract(
                name="transaction-costs",
                versions=("06.2024",),
                validate=None,
                upload=Success(201, _VALID),
                # "an object that can contain an array" (inferred).
                envelope="items",
                envelope_certain=False,
                id_field="orderId",
                key_fields=("orderId",),
                flags=frozenset({NEW_ERRORS}),
                flat_by_default=True,
                status_aliases=("/transaction-costs/state",),
            ),
        )
    }
)


def get_contract(name: str) -> ResourceContract:
    """Return the contract of resource ``name``.

    :param name: A Klar resource name.
    :raises KeyError: When Klar has no such resource; the message lists the ones it has.
    """
    try:
        return CONTRACT[name]
    except KeyError:
        raise KeyError(f"Klar has no resource {name!r}; it has: {', '.join(sorted(CONTRACT))}.") from None
