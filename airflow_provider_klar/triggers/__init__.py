"""Triggers of airflow-provider-klar: :class:`~airflow_provider_klar.triggers.klar.KlarStatusTrigger`."""
