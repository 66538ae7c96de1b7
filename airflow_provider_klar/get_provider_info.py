"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_klar import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-klar",
        "name": "Klar",
        "description": "Upload orders, refunds and cost data to `Klar <https://getklar.com>`__.",
        "versions": [__version__],
        "connection-types": [
            {"hook-class-name": "airflow_provider_klar.hooks.klar.KlarHook", "connection-type": "klar"}
        ],
    }
