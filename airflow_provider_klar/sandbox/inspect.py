"""``/_sandbox/...``: what the sandbox received, its fault knobs, and a reset. Not part of Klar's API.

These routes need no token: they exist for tests and demos on the local machine.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from airflow_provider_klar.sandbox.contract import CONTRACT
from airflow_provider_klar.sandbox.engine import Sandbox

TAG = "Sandbox inspection (not Klar)"


def _known(resource: str) -> str:
    if resource not in CONTRACT:
        known = ", ".join(sorted(CONTRACT))
        raise HTTPException(404, f"Unknown Klar resource {resource!r}; use one of: {known}.")
    return resource


def inspection_router(sandbox: Sandbox) -> APIRouter:
    """Return the ``/_sandbox`` routes serving ``sandbox``."""
    router = APIRouter(prefix="/_sandbox", tags=[TAG])

    @router.get("/health", summary="Whether the sandbox is up")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/counts", summary="Stored records per resource")
    def counts() -> dict[str, int]:
        """Distinct records stored per resource (upserts by key do not add)."""
        return sandbox.counts()

    @router.get("/records/{resource}", summary="Stored records of a resource")
    def records(
        resource: str,
        id: str | None = Query(None, description="Only records with this id (orderId for costs)."),
        limit: int | None = Query(None, ge=0),
        offset: int = Query(0, ge=0),
    ) -> list[dict[str, Any]]:
        """The records as stored (the JSON each was sent as), first stored first."""
        return sandbox.store.records(_known(resource), record_id=id, limit=limit, offset=offset)

    @router.get("/records/{resource}/{record_id:path}", summary="One stored record by id")
    def record(resource: str, record_id: str) -> dict[str, Any]:
        """The record with this id (``orderId`` for cost resources; the latest stored when several)."""
        found = sandbox.store.get(_known(resource), record_id)
        if found is None:
            raise HTTPException(404, f"No {resource} record with id {record_id!r} is stored.")
        return found

    @router.get("/stored/{resource}/{record_id:path}", summary="What is stored under an id, with bookkeeping")
    def stored(resource: str, record_id: str) -> dict[str, Any]:
        """The current version of the record (``body``), the API version it came to (``api_version``),
        when it was stored last (``stored_at``) and how many times (``writes``)."""
        found = sandbox.store.info(_known(resource), record_id)
        if found is None:
            raise HTTPException(404, f"No {resource} record with id {record_id!r} is stored.")
        return found

    @router.get("/status/{resource}", summary="Klar's status object, without a token")
    def status(resource: str) -> dict[str, Any]:
        """The same body as ``GET /<resource>/status``."""
        return sandbox.status(_known(resource))

    @router.get("/requests", summary="The request log")
    def requests(
        include_get: bool = Query(False, description="Also list status reads."),
    ) -> list[dict[str, Any]]:
        """Requests to Klar's routes, oldest first (method, path, query, records, status, fault...)."""
        return sandbox.requests(include_get=include_get)

    @router.get("/requests/wait", summary="Wait until the log holds a number of finished requests")
    async def wait_requests(
        count: int = Query(..., ge=0, description="How many finished requests to wait for."),
        timeout: float = Query(30.0, ge=0, le=600, description="Seconds to wait at most (then 408)."),
        include_get: bool = Query(False, description="Also count status reads."),
    ) -> list[dict[str, Any]]:
        """The request log, once it holds ``count`` finished requests (answered, dropped or failed)."""
        try:
            return await run_in_threadpool(
                sandbox.wait_for_requests, count, timeout=timeout, include_get=include_get
            )
        except TimeoutError as exc:
            raise HTTPException(408, str(exc)) from None

    @router.get("/faults", summary="The current fault knobs")
    def faults() -> dict[str, Any]:
        return sandbox.faults.snapshot()

    @router.post("/faults", summary="Change fault knobs")
    def set_faults(
        knobs: dict[str, Any] = Body(  # noqa: B008
            ...,
            examples=[{"fail_next": [429, 503], "latency_ms": 50, "retry_after": 0}],
            description="Any of latency_ms, latency_jitter_ms, fail_rate, fail_codes, drop_rate, "
            'rate_limit, retry_after, fail_next (statuses, [status, retry_after], "drop" or "drop_after"), '
            'seed, envelope ("array", "items" or {"cogs": "array"}), max_body_bytes, echo_auth. '
            "Knobs left out keep their values.",
        ),
    ) -> dict[str, Any]:
        try:
            sandbox.faults.set(**knobs)
        except (TypeError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
        return sandbox.faults.snapshot()

    @router.post("/reset", summary="Forget records, counters, the request log and faults")
    async def reset() -> dict[str, bool]:
        await run_in_threadpool(sandbox.reset)
        return {"reset": True}

    return router
