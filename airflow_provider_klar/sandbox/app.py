"""The sandbox's FastAPI app: Klar's routes for every resource and version, and ``/_sandbox/`` inspection.

Routes are generated from ``resources.py``: one ``/json`` (and ``/validate`` where Klar has one) per
known version, and one ``/status`` per resource, so an unknown version or resource is a 404 as on Klar.
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

from airflow_provider_klar.resources import MAX_BATCH_SIZE, RESOURCES, KlarResource
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
from airflow_provider_klar.sandbox.responses import Answer, nest_error

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
        try:
            latency = self.sandbox.faults.latency_ms
            if latency:
                await asyncio.sleep(latency / 1000)  # async: other requests are served meanwhile
            fault = self.sandbox.faults.decide()
            if fault is not None and not fault.after:
                entry["fault"] = fault.reason
                await self._inject(fault, scope, receive, send, entry)
                return
            if fault is not None:
                entry["fault"] = fault.reason

            async def logging_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    entry["status"] = message["status"]
                    if fault is not None:  # handled (and stored); now lose the answer on the way
                        entry["status"] = None
                        await _drop(receive)
                        return
                if fault is None:
                    await send(message)

            await self.app(scope, receive, logging_send)
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            self.sandbox.log_request(entry)

    async def _inject(self, fault: Fault, scope: Scope, receive: Receive, send: Send, entry: dict) -> None:
        if fault.drop:
            if await _drop(receive):
                return
            fault = Fault(fault.reason, 502)  # another server: the closest thing to a drop
        assert fault.status is not None
        entry["status"] = fault.status
        answer = nest_error(fault.status, f"Injected by the Klar sandbox ({fault.reason}).")
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        await _to_response(Answer(answer.status, answer.body, headers))(scope, receive, send)


async def _drop(receive: Receive) -> bool:
    """Close the client's connection without a byte of answer; return whether that was possible."""
    # Uvicorn's receive() is a bound method of its request cycle, which holds the transport:
    # aborting it closes the socket like a crashed load balancer would.
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.abort()
    for _ in range(3):  # let uvicorn see the connection lost, so it sends no 500 itself
        await asyncio.sleep(0)
    return True


def _klar_route(
    sandbox: Sandbox, row: KlarResource, version: str, mode: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not _authorized(sandbox, request):
            return _to_response(_unauthorized())
        body = await request.body()
        query = dict(request.query_params)
        # Validation and SQLite are blocking work: a thread keeps the event loop free for others.
        answer, n = await run_in_threadpool(sandbox.submit, row, version, mode, body, query)
        request.scope.get("state", {}).get("klar_log", {})["records"] = n
        return _to_response(answer)

    return endpoint


def _status_route(sandbox: Sandbox, row: KlarResource) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if not _authorized(sandbox, request):
            return _to_response(_unauthorized())
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
        description=APP_DESCRIPTION.format(max_batch=MAX_BATCH_SIZE),
        openapi_tags=TAGS,
    )
    app.state.sandbox = state
    for row in RESOURCES.values():
        for version in row.versions:
            modes = ("upload", "validate") if row.has_validate else ("upload",)
            for mode in modes:
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
        if row.status_path.endswith("/status"):
            # One help page names the status path ``/state``; answer there too, undocumented.
            app.add_api_route(
                row.status_path[: -len("status")] + "state",
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
