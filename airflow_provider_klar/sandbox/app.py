"""The sandbox's FastAPI app: Klar's routes for every resource and version, and ``/_sandbox/`` inspection.

Routes are generated from the sandbox's own :mod:`~airflow_provider_klar.sandbox.contract` (never from the
provider's resource table): one ``/json`` (and ``/validate`` where Klar has one) per known version, and
one ``/status`` per resource, so an unknown version or resource is a 404 as on Klar.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_klar.sandbox.contract import CONTRACT, MAX_OBJECTS, ResourceContract
from airflow_provider_klar.sandbox.docs import (
    APP_DESCRIPTION,
    TAGS,
    install_openapi,
    route_doc,
    status_doc,
)
from airflow_provider_klar.sandbox.engine import Sandbox, log_entry
from airflow_provider_klar.sandbox.faults import Fault
from airflow_provider_klar.sandbox.inspect import inspection_router
from airflow_provider_klar.sandbox.responses import (
    ECHO_HEADER,
    Answer,
    echo_authorization,
    nest_error,
    proxy_page,
)

#: Paths that are neither Klar's nor subject to faults.
_OWN_PATHS = ("/_sandbox", "/docs", "/redoc", "/openapi.json")


def _to_response(answer: Answer) -> Response:
    content = answer.content()
    return Response(
        content=content,
        status_code=answer.status,
        media_type="application/json" if content else None,
        headers=dict(answer.headers or {}),
    )


def _unauthorized() -> Answer:
    answer = nest_error(
        401, "Unauthorized: send the header 'Authorization: Bearer <token>' with a valid token."
    )
    return Answer(answer.status, answer.body, {"WWW-Authenticate": "Bearer"})


class FaultMiddleware:
    """Pure ASGI middleware: latency and injected faults for Klar's routes, and the request log.

    A request is logged when it arrives, before anything else happens to it, and its entry is complete
    (status, records, fault, duration) before the first byte of the answer leaves or the connection is
    dropped: a client that has its answer can read the log and find its request there, finished.

    :param app: The wrapped ASGI app.
    :param sandbox: The sandbox whose fault knobs and log to use.
    """

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OWN_PATHS):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope)
        entry = log_entry(scope["method"], scope["path"], request.query_params)
        scope.setdefault("state", {})["klar_log"] = entry
        sandbox = self.sandbox
        sandbox.log_request(entry)

        def finish(status: int | None, state: str) -> None:
            sandbox.update_request(
                entry,
                status=status,
                state=state,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

        try:
            delay = sandbox.faults.delay()
            if delay:
                await asyncio.sleep(delay)  # async: other requests are served meanwhile
            fault = sandbox.faults.decide()
            if fault is not None:
                sandbox.update_request(entry, fault=fault.reason)
            if fault is not None and not fault.after:
                await self._inject(fault, scope, receive, send, finish)
                return

            async def logging_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    if fault is not None:  # handled (and stored); now lose the answer on the way
                        finish(None, "dropped")
                        await _drop(receive)
                        return
                    finish(message["status"], "answered")
                if fault is None:
                    await send(message)

            await self.app(scope, receive, logging_send)
        finally:
            if entry["state"] == "received":  # the app failed, or the client went away
                finish(entry["status"], "failed")

    async def _inject(
        self,
        fault: Fault,
        scope: Scope,
        receive: Receive,
        send: Send,
        finish: Callable[[int | None, str], None],
    ) -> None:
        if fault.drop:
            transport = _transport(receive)
            if transport is not None:
                finish(None, "dropped")
                await _drop(receive)
                return
            fault = Fault(fault.reason, 502)  # another server: the closest thing to a drop
        assert fault.status is not None
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        finish(fault.status, "answered")
        if self.sandbox.faults.echo_auth:
            # A proxy's error page: not JSON, and (carelessly) repeating the request's credentials.
            authorization = Request(scope).headers.get("authorization", "")
            headers[ECHO_HEADER] = authorization
            content = proxy_page(
                fault.status, f"Injected by the Klar sandbox ({fault.reason})", authorization
            )
            response = Response(content, fault.status, headers=headers, media_type="text/plain")
        else:
            answer = nest_error(fault.status, f"Injected by the Klar sandbox ({fault.reason}).")
            response = _to_response(Answer(answer.status, answer.body, headers))
        await response(scope, receive, send)


def _transport(receive: Receive) -> Any:
    # Uvicorn's receive() is a bound method of its request cycle, which holds the transport.
    return getattr(getattr(receive, "__self__", None), "transport", None)


async def _drop(receive: Receive) -> bool:
    """Close the client's connection without a byte of answer; return whether that was possible."""
    # Aborting the transport closes the socket like a crashed load balancer would.
    transport = _transport(receive)
    if transport is None:
        return False
    transport.abort()
    for _ in range(3):  # let uvicorn see the connection lost, so it sends no 500 itself
        await asyncio.sleep(0)
    return True


def _klar_route(
    sandbox: Sandbox, row: ResourceContract, version: str, mode: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not _authorized(sandbox, request):
            return _refuse(sandbox, request)
        body = await request.body()
        query = dict(request.query_params)
        authorization = request.headers.get("authorization", "")
        # Validation and SQLite are blocking work: a thread keeps the event loop free for others.
        answer, n = await run_in_threadpool(
            sandbox.submit, row, version, mode, body, query, authorization=authorization
        )
        entry = request.scope.get("state", {}).get("klar_log")
        if entry is not None:
            sandbox.update_request(entry, records=n, bytes=len(body))
        return _to_response(answer)

    return endpoint


def _refuse(sandbox: Sandbox, request: Request) -> Response:
    answer = _unauthorized()
    if sandbox.faults.echo_auth:
        answer = echo_authorization(answer, request.headers.get("authorization", ""))
    return _to_response(answer)


def _status_route(sandbox: Sandbox, row: ResourceContract) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not _authorized(sandbox, request):
            return _refuse(sandbox, request)
        status = await run_in_threadpool(sandbox.status, row.name)
        return _to_response(Answer(200, status))

    return endpoint


def _authorized(sandbox: Sandbox, request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), sandbox.token.encode())


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if request.url.path.startswith("/_sandbox"):
        return JSONResponse({"detail": getattr(exc, "detail", str(exc))}, status_code=status)
    # Klar (NestJS) answers an unknown path or method with 404 "Cannot <METHOD> <path>".
    if status in (404, 405):
        return _to_response(nest_error(404, f"Cannot {request.method} {request.url.path}"))
    return _to_response(nest_error(status, str(getattr(exc, "detail", exc))))


def create_app(
    *,
    token: str = "dev-token",
    db: str | None = None,
    latency_ms: int = 0,
    fail_rate: float = 0.0,
    rate_limit: float | str | None = None,
    sandbox: Sandbox | None = None,
    **faults: Any,
) -> FastAPI:
    """Create the sandbox app; its state is ``app.state.sandbox`` (a :class:`Sandbox`).

    :param token: The bearer token Klar's routes require.
    :param db: A SQLite file to keep the records in across restarts; ``None`` keeps them in memory.
    :param latency_ms: Delay added to every Klar request.
    :param fail_rate: Probability (0 to 1) of answering a Klar request with a random 500 or 503.
    :param rate_limit: Requests per second (or ``"N/s"``, ``"N/m"``) beyond which Klar's routes
        answer 429 with ``Retry-After``.
    :param sandbox: An existing state to serve instead of creating one (then ``token``, ``db`` and
        the faults are ignored).
    :param faults: More fault knobs: ``fail_codes``, ``drop_rate``, ``retry_after``, ``fail_next``,
        ``seed`` (see :class:`~airflow_provider_klar.sandbox.faults.FaultInjector`).
    """
    state = sandbox or Sandbox(
        token=token, db=db, latency_ms=latency_ms, fail_rate=fail_rate, rate_limit=rate_limit, **faults
    )
    app = FastAPI(
        title="Klar Open API (local sandbox)",
        version="sandbox",
        description=APP_DESCRIPTION.format(max_batch=MAX_OBJECTS),
        openapi_tags=TAGS,
    )
    app.state.sandbox = state
    for row in CONTRACT.values():
        for version in row.versions:
            for mode in row.modes:
                app.add_api_route(
                    row.path(version, mode),
                    _klar_route(state, row, version, mode),
                    methods=["POST"],
                    name=f"{row.name}_{version}_{mode}",
                    response_model=None,
                    **route_doc(row, version, mode),
                )
        app.add_api_route(
            row.status_path,
            _status_route(state, row),
            methods=["GET"],
            name=f"{row.name}_status",
            response_model=None,
            **status_doc(row),
        )
        for alias in row.status_aliases:
            # The help page names the status path ``/state`` in one place; answer there too, undocumented.
            app.add_api_route(
                alias,
                _status_route(state, row),
                methods=["GET"],
                include_in_schema=False,
                response_model=None,
            )
    app.include_router(inspection_router(state))
    app.add_exception_handler(StarletteHTTPException, _not_found)
    app.add_middleware(FaultMiddleware, sandbox=state)
    install_openapi(app)
    return app
