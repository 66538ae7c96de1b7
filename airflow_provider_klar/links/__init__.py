"""Extra links shown on Klar tasks in the Airflow UI."""

from __future__ import annotations
