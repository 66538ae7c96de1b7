"""Sensors of airflow-provider-klar: :class:`~airflow_provider_klar.sensors.klar.KlarStatusSensor`."""
