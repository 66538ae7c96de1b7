"""Hooks of the Klar provider: :class:`~airflow_provider_klar.hooks.klar.KlarHook`."""
