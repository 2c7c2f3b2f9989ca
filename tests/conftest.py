"""Shared fixtures: the CCP sandbox (a real HTTP server on 127.0.0.1) comes from the package itself."""

pytest_plugins = ["airflow_provider_ccp.sandbox.testing"]
