"""A scripted stand-in for KlarHook's status reads, shared by the sensor and trigger tests."""

from __future__ import annotations

from collections.abc import Iterable

from airflow_provider_klar.results import KlarStatus


class ScriptedStatusHook:
    """Answers ``get_status``/``aget_status`` from a script: a KlarStatus is returned, an exception raised.

    Each call takes the next item; the last one repeats.
    """

    def __init__(self, script: Iterable[KlarStatus | BaseException]) -> None:
        self.script = list(script)
        self.calls: list[str] = []
        self.closed = False

    def get_status(self, resource: str) -> KlarStatus:
        self.calls.append(resource)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    async def aget_status(self, resource: str) -> KlarStatus:
        return self.get_status(resource)

    def close(self) -> None:
        self.closed = True
