"""pytest plugin: the ``klar_sandbox`` fixture (filled in by the sandbox work)."""

from __future__ import annotations
