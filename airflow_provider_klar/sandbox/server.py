"""Run the sandbox: in a background thread of this process, or talk to one started elsewhere.

- :class:`SandboxServer`: uvicorn in a daemon thread on 127.0.0.1; its accessors read the state
  in-process.
- :class:`SandboxClient`: the same accessors over HTTP (``/_sandbox/...``), for a sandbox started by
  the ``klar-sandbox`` command in another process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from airflow_provider_klar.sandbox.faults import FaultInjector

if TYPE_CHECKING:
    import uvicorn

    from airflow_provider_klar.sandbox.engine import Sandbox


def connection_json(url: str, token: str) -> str:
    """Return an Airflow connection as JSON, ready for ``AIRFLOW_CONN_<ID>``.

    :param url: The sandbox's base URL.
    :param token: Its token.
    """
    return json.dumps({"conn_type": "klar", "host": url, "password": token})


class SandboxServer:
    """The Klar sandbox served by uvicorn in a background thread.

    Usage::

        with SandboxServer() as klar:
            os.environ["AIRFLOW_CONN_KLAR_DEFAULT"] = klar.connection_uri()
            ...  # run DAGs; then inspect:
            assert klar.count("orders") == 3

    :param host: The address to bind (loopback by default).
    :param port: The port; 0 picks a free one (read :attr:`url` after :meth:`start`).
    :param token: The bearer token Klar's routes require.
    :param db: A SQLite file to keep the records in across restarts; ``None`` keeps them in memory.
    :param faults: Initial fault knobs and switches: ``latency_ms``, ``latency_jitter_ms``,
        ``fail_rate``, ``fail_codes``, ``drop_rate``, ``rate_limit``, ``retry_after``, ``fail_next``,
        ``seed``, ``envelope``, ``max_body_bytes``, ``echo_auth`` (see
        :class:`~airflow_provider_klar.sandbox.faults.FaultInjector`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "dev-token",
        db: str | None = None,
        **faults: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.db = db
        FaultInjector(**faults)  # refuse an unknown or out-of-range knob now, not at start()
        self._faults = faults
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sandbox: Sandbox | None = None

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return f"SandboxServer(url={self.url!r}, {state})"

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8765`` (the real port once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def sandbox(self) -> Sandbox:
        """The in-process state (records, counters, faults, log)."""
        if self._sandbox is None:
            raise RuntimeError("The sandbox is not started; call start() or use it as a context manager.")
        return self._sandbox

    def start(self, timeout: float = 10.0) -> SandboxServer:
        """Bind the port, start uvicorn in a daemon thread and wait until it answers.

        :param timeout: Seconds to wait for uvicorn to start.
        :raises RuntimeError: When it does not start in time.
        """
        if self._thread is not None:
            return self
        import uvicorn

        from airflow_provider_klar.sandbox.app import create_app
        from airflow_provider_klar.sandbox.engine import Sandbox

        self._sandbox = Sandbox(token=self.token, db=self.db, **self._faults)
        app = create_app(sandbox=self._sandbox)
        sock = socket.create_server((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", ws="none", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"klar-sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The Klar sandbox did not start on {self.url}.")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop uvicorn, wait for its thread and close the database."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sandbox is not None:
            self._sandbox.close()
        self._server = self._thread = self._sandbox = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def connection(self, conn_id: str = "klar_default") -> dict[str, Any]:
        """Return the Airflow connection to this sandbox as a dict (conn_type, host, password).

        :param conn_id: Unused in the dict; kept symmetric with :meth:`connection_uri`.
        """
        return json.loads(connection_json(self.url, self.token))

    def connection_uri(self, conn_id: str = "klar_default") -> str:
        """Return the Airflow connection as JSON, for ``AIRFLOW_CONN_<CONN_ID>``.

        :param conn_id: The connection id the value is meant for (the environment variable's suffix).
        """
        return connection_json(self.url, self.token)

    def env_var(self, conn_id: str = "klar_default") -> tuple[str, str]:
        """Return ``(name, value)`` of the environment variable that defines the connection.

        :param conn_id: The connection id, e.g. ``klar_default``.
        """
        return f"AIRFLOW_CONN_{conn_id.upper()}", self.connection_uri(conn_id)

    def count(self, resource: str) -> int:
        """Return how many distinct records of ``resource`` are stored.

        :param resource: A Klar resource, e.g. ``orders``.
        """
        return self.sandbox.store.count(resource)

    def counts(self) -> dict[str, int]:
        """Return the number of stored records per resource."""
        return self.sandbox.counts()

    def get(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """Return the stored record with this id (``orderId`` for cost resources), or ``None``.

        :param resource: A Klar resource.
        :param record_id: The id.
        """
        return self.sandbox.store.get(resource, record_id)

    def stored(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """Return what is stored under an id: ``body`` (the current version), ``api_version``,
        ``stored_at``, ``writes`` (times stored), ``id`` and ``key``; ``None`` when nothing is.

        :param resource: A Klar resource.
        :param record_id: The id (``orderId`` for cost resources), or a composite key as stored.
        """
        return self.sandbox.store.info(resource, record_id)

    def records(self, resource: str) -> list[dict[str, Any]]:
        """Return every stored record of ``resource``, first stored first.

        :param resource: A Klar resource.
        """
        return self.sandbox.store.records(resource)

    def requests(self, *, include_get: bool = False) -> list[dict[str, Any]]:
        """Return the log of requests to Klar's routes (POSTs only unless ``include_get``).

        A request is logged when it arrives; its entry is complete before its answer leaves.

        :param include_get: Also return status reads.
        """
        return self.sandbox.requests(include_get=include_get)

    def wait_for_requests(
        self,
        count: int | Callable[[list[dict[str, Any]]], bool],
        *,
        timeout: float = 30.0,
        include_get: bool = False,
        finished: bool = True,
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` requests are finished (or ``count(log)`` is true); return the log.

        Wakes up at each change of the log: no polling, no sleeps.

        :param count: A number of finished requests, or a function of the log.
        :param timeout: Seconds to wait at most.
        :param include_get: Also count status reads.
        :param finished: Count only requests that were answered or dropped; ``False`` counts arrivals.
        :raises TimeoutError: When it does not happen in time.
        """
        return self.sandbox.wait_for_requests(
            count, timeout=timeout, include_get=include_get, finished=finished
        )

    def status(self, resource: str) -> dict[str, Any]:
        """Return Klar's status body for ``resource`` (counts as strings).

        :param resource: A Klar resource.
        """
        return self.sandbox.status(resource)

    def set_faults(self, **faults: Any) -> None:
        """Change fault knobs and switches at runtime, e.g. ``set_faults(fail_next=[429], retry_after=0)``.

        ``fail_next`` entries: a status, ``[status, retry_after_seconds]``, ``"drop"`` (close the
        connection unanswered, nothing stored) or ``"drop_after"`` (store, then close unanswered).
        ``envelope``: ``"array"`` or ``"items"`` for every cost resource, or ``{"cogs": "array"}``.

        :param faults: Any of ``latency_ms``, ``latency_jitter_ms``, ``fail_rate``, ``fail_codes``,
            ``drop_rate``, ``rate_limit``, ``retry_after``, ``fail_next``, ``seed``, ``envelope``,
            ``max_body_bytes``, ``echo_auth``.
        """
        self.sandbox.faults.set(**faults)

    def reset(self) -> None:
        """Forget every record, counter, logged request and fault."""
        self.sandbox.reset()


class SandboxClient:
    """The accessors of :class:`SandboxServer` for a sandbox running in another process.

    :param url: The sandbox's base URL, e.g. ``http://127.0.0.1:8765``.
    :param token: Its token (only used by :meth:`connection_uri`).
    :param timeout: Seconds per HTTP request.
    """

    def __init__(self, url: str, token: str = "dev-token", *, timeout: float = 10.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.token = token
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def __repr__(self) -> str:
        return f"SandboxClient(url={self.url!r})"

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def __enter__(self) -> SandboxClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _get(self, path: str, **params: Any) -> Any:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout: float = 30.0) -> SandboxClient:
        """Wait until the sandbox answers ``/_sandbox/health``.

        :param timeout: Seconds to wait.
        :raises TimeoutError: When it does not answer in time.
        """
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._http.get("/_sandbox/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"The Klar sandbox at {self.url} did not answer within {timeout:g} s.")
            time.sleep(0.05)

    def connection_uri(self, conn_id: str = "klar_default") -> str:
        """Return the Airflow connection as JSON, for ``AIRFLOW_CONN_<CONN_ID>``.

        :param conn_id: The connection id the value is meant for.
        """
        return connection_json(self.url, self.token)

    def count(self, resource: str) -> int:
        """Return how many distinct records of ``resource`` are stored."""
        return int(self._get("/_sandbox/counts").get(resource, 0))

    def counts(self) -> dict[str, int]:
        """Return the number of stored records per resource."""
        return dict(self._get("/_sandbox/counts"))

    def get(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """Return the stored record with this id, or ``None``."""
        response = self._http.get(f"/_sandbox/records/{resource}/{record_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def stored(self, resource: str, record_id: str) -> dict[str, Any] | None:
        """Return what is stored under an id (see :meth:`SandboxServer.stored`), or ``None``."""
        response = self._http.get(f"/_sandbox/stored/{resource}/{record_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def records(self, resource: str) -> list[dict[str, Any]]:
        """Return every stored record of ``resource``."""
        return list(self._get(f"/_sandbox/records/{resource}"))

    def requests(self, *, include_get: bool = False) -> list[dict[str, Any]]:
        """Return the request log (POSTs only unless ``include_get``)."""
        return list(self._get("/_sandbox/requests", include_get=str(include_get).lower()))

    def wait_for_requests(
        self, count: int, *, timeout: float = 30.0, include_get: bool = False
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` requests are finished; return the log (the server waits, no polling).

        :param count: A number of finished requests.
        :param timeout: Seconds to wait at most.
        :param include_get: Also count status reads.
        :raises TimeoutError: When it does not happen in time.
        """
        response = self._http.get(
            "/_sandbox/requests/wait",
            params={"count": count, "timeout": timeout, "include_get": str(include_get).lower()},
            timeout=timeout + 10,
        )
        if response.status_code == 408:
            raise TimeoutError(response.json().get("detail"))
        response.raise_for_status()
        return list(response.json())

    def status(self, resource: str) -> dict[str, Any]:
        """Return Klar's status body for ``resource``."""
        return dict(self._get(f"/_sandbox/status/{resource}"))

    def set_faults(self, **faults: Any) -> None:
        """Change fault knobs (see :meth:`SandboxServer.set_faults`)."""
        response = self._http.post("/_sandbox/faults", json=faults)
        if response.status_code == 400:
            raise ValueError(response.json().get("detail"))
        response.raise_for_status()

    def reset(self) -> None:
        """Forget every record, counter, logged request and fault."""
        self._http.post("/_sandbox/reset").raise_for_status()
