"""Turn an Airflow connection of type ``klar`` into checked settings: base URL, token, version, timeout.

Kept apart from the hook so the rules (which URLs are allowed, where the scheme and port may come
from, how ``extra`` is read) can be tested without HTTP.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_klar.exceptions import KlarConfigurationError
from airflow_provider_klar.resources import ENVELOPES, RESOURCES

#: Klar's public Open API.
DEFAULT_BASE_URL = "https://open-api.getklar.com"
#: Seconds to wait for a TCP/TLS connection to Klar.
CONNECT_TIMEOUT = 10.0
#: Seconds to wait for Klar's answer: a batch of 1000 orders can take a while to validate.
DEFAULT_READ_TIMEOUT = 120.0

_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _ConnectionLike(Protocol):
    conn_id: str
    host: str | None
    schema: str | None
    port: int | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class KlarConnectionSettings:
    """The checked settings of one ``klar`` connection.

    :param conn_id: The Airflow connection id, named in every error message.
    :param base_url: Scheme, host, optional port and path prefix, without a trailing slash.
    :param token: The API token. Never part of ``repr``.
    :param api_version: ``extra.api_version``: one version, a mapping resource -> version, or ``None``;
        the connection form's ``extra.default_api_version`` fills in the resources it does not name.
    :param timeout: ``extra.timeout`` in seconds (the read timeout), or ``None`` for the default.
    :param envelope: ``extra.envelope`` read per resource: resource name -> ``"array"`` or ``"items"``;
        resources it does not name keep the table's default and may fall back to the other envelope.
    """

    conn_id: str
    base_url: str
    token: str = field(repr=False)
    api_version: str | Mapping[str, str] | None = None
    timeout: float | None = None
    envelope: Mapping[str, str] = field(default_factory=dict)


def is_loopback(hostname: str) -> bool:
    """Return whether ``hostname`` is this machine: ``localhost``, 127.0.0.0/8 or ``::1``.

    :param hostname: A host name or IP address, without brackets or port.
    """
    name = hostname.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def build_base_url(conn_id: str, host: str | None, schema: str | None, port: int | None) -> str:
    """Return the base URL from the connection's ``host``, ``schema`` and ``port`` fields.

    ``host`` may be a bare host name or a full URL with scheme, port and path prefix. The scheme comes
    from ``host``, else from ``schema`` (where Airflow's URI parsing puts it, e.g.
    ``klar://:token@127.0.0.1:8080/http``), else ``https``. Plain ``http`` is allowed only to loopback.

    :param conn_id: The connection id, for error messages.
    :param host: The ``host`` field; empty means Klar's public API.
    :param schema: The ``schema`` field; used only when it is ``http`` or ``https``.
    :param port: The ``port`` field; used when ``host`` names no port, else it must name the same one.
        The scheme's default port (443, 80) is left out of the URL.
    :raises KlarConfigurationError: When the URL is malformed, plain ``http`` to another machine, or the
        host and the port field name different ports.
    """
    text = (host or "").strip() or DEFAULT_BASE_URL
    if "://" not in text:
        scheme = (schema or "").strip().lower()
        text = f"{scheme if scheme in _SCHEMES else 'https'}://{text}"
    try:
        parts = urlsplit(text)
        parsed_port = parts.port
    except ValueError as err:
        raise KlarConfigurationError(
            f"The host of connection {conn_id!r} is not a valid URL ({err}). Use e.g. {DEFAULT_BASE_URL!r}."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or not parts.hostname:
        raise KlarConfigurationError(
            f"The host of connection {conn_id!r} must be an http(s) URL such as {DEFAULT_BASE_URL!r}."
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise KlarConfigurationError(
            f"The host of connection {conn_id!r} must not contain credentials, a query or a fragment: "
            "put the API token in the password field."
        )
    if scheme == "http" and not is_loopback(parts.hostname):
        raise KlarConfigurationError(
            f"Connection {conn_id!r} uses plain http:// to {parts.hostname!r}: the token would travel "
            "unencrypted. Use https:// (plain http is allowed only to localhost/127.0.0.1/::1)."
        )
    hostname = parts.hostname
    netloc = f"[{hostname}]" if ":" in hostname else hostname
    final_port = _port(conn_id, parsed_port, port)
    # The scheme's own port is left out: https://open-api.getklar.com, not ...:443.
    if final_port and final_port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{final_port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _port(conn_id: str, in_host: int | None, field: int | str | None) -> int | None:
    """Return the port: the one in the Base URL, else the Port field; both must agree when both are set.

    The form shows Port because Airflow 3's Test button needs it filled (it sends 0 for an empty one),
    so a user may well type the port twice; only a contradiction is an error.
    """
    try:
        given = int(field) if field not in (None, "") else 0
    except (TypeError, ValueError):
        raise KlarConfigurationError(
            f"The port of connection {conn_id!r} must be a number such as 443; got {field!r}."
        ) from None
    if not 0 <= given <= 65535:
        raise KlarConfigurationError(f"The port of connection {conn_id!r} must be 1 to 65535; got {given}.")
    # 0 is what Airflow's UI stores for an emptied Port field: no port.
    if in_host is not None and given and given != in_host:
        raise KlarConfigurationError(
            f"The host of connection {conn_id!r} names port {in_host} but its Port field says {given}: "
            "make them agree, or empty the Port field."
        )
    return in_host if in_host is not None else (given or None)


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    # Airflow 2 forms stored custom fields as ``extra__<conn_type>__<name>``; newer ones use ``<name>``.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__klar__{name}")
    return None if value in (None, "") else value


def _with_default(
    versions: str | Mapping[str, str] | None, default: str | Mapping[str, str] | None
) -> str | Mapping[str, str] | None:
    """Combine Extra's ``api_version`` with the form's ``default_api_version`` (the one field people see)."""
    if not isinstance(default, str) or isinstance(versions, str):
        return versions if versions is not None else default
    if versions is None:
        return default
    return {**dict.fromkeys(RESOURCES, default), **versions}


def _api_version(conn_id: str, value: Any) -> str | Mapping[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v.strip() for k, v in value.items() if v.strip()}
    raise KlarConfigurationError(
        f"extra.api_version of connection {conn_id!r} must be a version such as '07.2025' or an object "
        f'naming one per resource such as {{"orders": "12.2022"}}; got {value!r}.'
    )


def _timeout(conn_id: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise KlarConfigurationError(
            f"extra.timeout of connection {conn_id!r} must be a positive number of seconds; got {value!r}."
        )
    return seconds


def _envelope_word(conn_id: str, value: Any, where: str) -> str:
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in ENVELOPES:
        raise KlarConfigurationError(
            f'{where} of connection {conn_id!r} must be "array" (a bare JSON array) or "items" '
            f'(an object {{"items": [...]}}); got {value!r}.'
        )
    return str(word)


def _envelope(conn_id: str, value: Any) -> dict[str, str]:
    """Read ``extra.envelope``: one word for every cost resource, or an object naming one per resource."""
    if value is None:
        return {}
    if isinstance(value, str):
        word = _envelope_word(conn_id, value, "extra.envelope")
        # One word means the resources whose envelope is uncertain; orders and refunds are always arrays.
        return {name: word for name, row in RESOURCES.items() if row.envelope_fallback}
    if not isinstance(value, Mapping):
        raise KlarConfigurationError(
            f'extra.envelope of connection {conn_id!r} must be "array", "items" or an object naming '
            f'one per resource such as {{"cogs": "array"}}; got {value!r}.'
        )
    pinned = {}
    for name, word in value.items():
        if name not in RESOURCES:
            raise KlarConfigurationError(
                f"extra.envelope of connection {conn_id!r} names {name!r}, which is not a Klar resource; "
                f"use one of: {', '.join(sorted(RESOURCES))}."
            )
        pinned[str(name)] = _envelope_word(conn_id, word, f"extra.envelope.{name}")
    return pinned


def settings_from_connection(conn: _ConnectionLike) -> KlarConnectionSettings:
    """Read and check a ``klar`` connection.

    :param conn: An Airflow ``Connection``.
    :raises KlarConfigurationError: When the token is missing or a field is malformed.
    """
    conn_id = conn.conn_id
    token = (conn.password or "").strip()
    # A token pasted together with its scheme would otherwise be sent as "Bearer Bearer ...".
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise KlarConfigurationError(
            f"Connection {conn_id!r} has no API token. Put the token from Klar (Store Settings, "
            "Data Sources, Klar Api, Access Token) in its password field (API token in the form)."
        )
    extra = conn.extra_dejson or {}
    return KlarConnectionSettings(
        conn_id=conn_id,
        base_url=build_base_url(conn_id, conn.host, conn.schema, conn.port),
        token=token,
        api_version=_with_default(
            _api_version(conn_id, _extra(extra, "api_version")),
            _api_version(conn_id, _extra(extra, "default_api_version")),
        ),
        timeout=_timeout(conn_id, _extra(extra, "timeout")),
        envelope=_envelope(conn_id, _extra(extra, "envelope")),
    )
