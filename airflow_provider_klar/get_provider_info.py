"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``).

The connection form is declared here (``conn-fields`` and ``ui-field-behaviour``, read by Airflow >= 3.2
without importing the hook) and in ``KlarHook.get_ui_field_behaviour`` /
``get_connection_form_widgets`` (read by Airflow 2.11 to 3.1). Keep the two in step.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_klar import __version__

_INTEGRATION = "Klar"


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-klar",
        "name": "Klar",
        "description": "Upload orders, refunds and cost data to `Klar <https://getklar.com>`__.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://help.getklar.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_klar.hooks.klar"]}],
        "operators": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_klar.operators.klar"]}
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_klar.sensors.klar"]}
        ],
        "triggers": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_klar.triggers.klar"]}
        ],
        "extra-links": ["airflow_provider_klar.links.klar.KlarLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_klar.hooks.klar.KlarHook",
                "hook-name": "Klar",
                "connection-type": "klar",
                "ui-field-behaviour": {
                    # Port stays visible: Airflow 3's Test button sends port 0 for an empty port, and the
                    # API then refuses to test the stored connection ("host or port differs"). A filled
                    # Port makes the button work; the hook ignores the scheme's default port.
                    "hidden-fields": ["schema", "login"],
                    "relabeling": {"host": "Base URL", "password": "API token"},
                    "placeholders": {
                        "host": "https://open-api.getklar.com (the default)",
                        "port": "443 (the sandbox: its port). Fill it in: the Test button needs it",
                        "password": "Klar: Store Settings > Data Sources > Klar Api > Access Token",
                        "default_api_version": "e.g. 07.2025 (empty: each resource's newest known version)",
                        "timeout": "120",
                        "email_hash_secret": "The salt Klar issued (only for hash_emails=True)",
                        "extra": '{"api_version": {"orders": "07.2025", "refunds": "12.2022"}}',
                    },
                },
                "conn-fields": {
                    # Not named api_version: Airflow 2.11's form deletes the Extra key of an empty field
                    # and cannot show an object, so it would wipe a per-resource api_version on save.
                    "default_api_version": {
                        "label": "API version",
                        "description": (
                            "One version (MM.YYYY) for every resource Extra's api_version does not name; "
                            "leave empty for each resource's newest known version."
                        ),
                        "schema": {"type": ["string", "null"], "pattern": r"^(0[1-9]|1[0-2])\.[0-9]{4}$"},
                    },
                    "timeout": {
                        "label": "Read timeout (seconds)",
                        "description": "How long to wait for Klar's answer to one request (default 120).",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    # A secret: the form masks it, and Airflow hides Extra keys naming "secret".
                    "email_hash_secret": {
                        "label": "E-mail hash salt",
                        "description": (
                            "The salt Klar issued for customer.emailHash; "
                            "KlarUploadOperator(hash_emails=True) hashes customer e-mail addresses "
                            "with it and sends no address."
                        ),
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            }
        ],
    }
