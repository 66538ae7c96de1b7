"""The one table of what differs between Klar's resources.

Everything ``klar-api.md`` marks as uncertain (body wrappers, success codes, status paths, query flags)
is a field of one row here, so correcting it is a one-line change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Query flags that make Klar answer in its most informative shapes: per-record ids and flat errors.
ORDER_FLAGS: Mapping[str, str] = MappingProxyType({"failedOrderIds": "true", "newErrors": "true"})
FLAT_ERRORS: Mapping[str, str] = MappingProxyType({"newErrors": "true"})

#: The largest batch Klar takes in one request.
MAX_BATCH_SIZE = 1000

#: The two bodies a batch can have: a bare JSON ``array`` or an object ``{"items": [...]}``.
ENVELOPES = ("array", "items")


@dataclass(frozen=True)
class KlarResource:
    """What the provider needs to know to talk to one Klar resource.

    :param name: The path segment, e.g. ``orders`` or ``logistics-costs``.
    :param versions: API versions known to exist, oldest first.
    :param default_version: The version used when neither the task nor the connection names one.
    :param has_validate: Whether ``POST /<version>/<name>/validate`` exists.
    :param validate_wrapper: ``None`` to send a JSON array to ``/validate``; otherwise the key of the
        object that wraps the array (``{"items": [...]}``).
    :param json_wrapper: The same for ``/json``.
    :param validate_codes: HTTP codes that mean the whole batch is valid.
    :param json_codes: HTTP codes that mean the whole batch was stored.
    :param status_path: Path of the status object, without a version segment.
    :param id_field: The field that identifies a record (and makes uploads idempotent).
    :param key_fields: The fields that together make a record's upsert key.
    :param query: Query parameters sent with every POST.
    :param flat: Whether records are flat objects (so CSV is a natural file format).
    :param envelope_fallback: Whether Klar's help pages disagree about this resource's body envelope:
        then, when Klar refuses a whole body without naming a record, the hook tries the other envelope
        once and keeps the one that works (unless the connection pins one in ``extra.envelope``).
    """

    name: str
    versions: tuple[str, ...]
    default_version: str
    has_validate: bool
    validate_wrapper: str | None
    json_wrapper: str | None
    validate_codes: frozenset[int]
    json_codes: frozenset[int]
    status_path: str
    id_field: str
    key_fields: tuple[str, ...]
    query: Mapping[str, str] = field(default_factory=lambda: FLAT_ERRORS)
    flat: bool = False
    envelope_fallback: bool = False

    def path(self, version: str, mode: str) -> str:
        """Return the request path for ``mode`` (``"upload"`` or ``"validate"``)."""
        return f"/{version}/{self.name}/{'validate' if mode == 'validate' else 'json'}"

    def wrapper(self, mode: str) -> str | None:
        """Return the key wrapping the array for ``mode``, or ``None`` for a bare array."""
        return self.validate_wrapper if mode == "validate" else self.json_wrapper

    def envelope(self, mode: str) -> str:
        """Return the default envelope for ``mode``: ``"array"`` or ``"items"``."""
        return "array" if self.wrapper(mode) is None else "items"

    def success_codes(self, mode: str) -> frozenset[int]:
        """Return the HTTP codes that mean the whole batch succeeded in ``mode``."""
        return self.validate_codes if mode == "validate" else self.json_codes


def _codes(*codes: int) -> frozenset[int]:
    return frozenset(codes)


RESOURCES: Mapping[str, KlarResource] = MappingProxyType(
    {
        r.name: r
        for r in (
            KlarResource(
                name="orders",
                versions=("12.2022", "07.2025"),
                default_version="07.2025",
                has_validate=True,
                validate_wrapper=None,
                json_wrapper=None,
                # Klar documents 201 for both; some live clients also see 200.
                validate_codes=_codes(200, 201),
                json_codes=_codes(200, 201),
                status_path="/orders/status",
                id_field="id",
                key_fields=("id",),
                query=ORDER_FLAGS,
            ),
            KlarResource(
                name="refunds",
                versions=("12.2022",),
                default_version="12.2022",
                has_validate=True,
                validate_wrapper=None,
                json_wrapper=None,
                validate_codes=_codes(200, 201),
                json_codes=_codes(200, 201),
                status_path="/refunds/status",
                id_field="id",
                key_fields=("id",),
            ),
            KlarResource(
                name="cogs",
                versions=("12.2022",),
                default_version="12.2022",
                has_validate=True,
                # The help text says "array"; Klar's own example wraps it in {"items": [...]}.
                validate_wrapper="items",
                json_wrapper="items",
                validate_codes=_codes(200, 201, 202),
                json_codes=_codes(200, 201, 202),
                status_path="/cogs/status",
                id_field="orderId",
                key_fields=("orderId", "lineItemId", "sku"),
                flat=True,
                envelope_fallback=True,
            ),
            KlarResource(
                name="logistics-costs",
                versions=("04.2024",),
                default_version="04.2024",
                has_validate=True,
                validate_wrapper="items",
                json_wrapper="items",
                validate_codes=_codes(200, 201, 202),
                json_codes=_codes(200, 201, 202),
                # The help page also names ``/state``; ``/status`` is the one the other resources use.
                status_path="/logistics-costs/status",
                id_field="orderId",
                key_fields=("orderId",),
                flat=True,
                envelope_fallback=True,
            ),
            KlarResource(
                name="transaction-costs",
                versions=("06.2024",),
                default_version="06.2024",
                has_validate=False,
                validate_wrapper="items",
                json_wrapper="items",
                validate_codes=_codes(),
                json_codes=_codes(200, 201, 202),
                status_path="/transaction-costs/status",
                id_field="orderId",
                key_fields=("orderId",),
                # Flat errors are this resource's default; the flag is sent anyway to say so.
                flat=True,
                envelope_fallback=True,
            ),
        )
    }
)


def get_resource(name: str) -> KlarResource:
    """Return the table row for ``name``.

    :param name: A Klar resource name such as ``orders``.
    :raises ValueError: When the name is not a Klar resource; the message lists the ones that are.
    """
    try:
        return RESOURCES[name]
    except KeyError:
        known = ", ".join(sorted(RESOURCES))
        raise ValueError(f"Unknown Klar resource {name!r}. Use one of: {known}.") from None


def resolve_version(
    resource: str | KlarResource,
    explicit: str | None = None,
    conn_default: str | Mapping[str, str] | None = None,
) -> str:
    """Choose the API version: the task's argument, then the connection's extra, then the resource default.

    The connection's ``api_version`` is either one version for every resource or an object naming a
    version per resource (``{"orders": "12.2022"}``); resources it does not name use their default.
    A version the table does not know is allowed (Klar may publish newer ones) but must look like
    ``MM.YYYY``.

    :param resource: A resource name or row.
    :param explicit: The version given to the hook or operator, if any.
    :param conn_default: ``extra.api_version`` of the connection, if any.
    :raises ValueError: When the chosen version is not of the form ``MM.YYYY``.
    """
    row = get_resource(resource) if isinstance(resource, str) else resource
    from_conn = conn_default.get(row.name) if isinstance(conn_default, Mapping) else conn_default
    version = str(explicit or from_conn or row.default_version).strip()
    month, _, year = version.partition(".")
    if not (
        len(month) == 2 and month.isdigit() and 1 <= int(month) <= 12 and len(year) == 4 and year.isdigit()
    ):
        raise ValueError(
            f"Klar API version {version!r} is not of the form MM.YYYY; "
            f"versions known for {row.name}: {', '.join(row.versions)}."
        )
    return version
