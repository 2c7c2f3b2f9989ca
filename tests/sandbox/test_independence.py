"""The sandbox is an independent peer: it must not import Airflow nor the provider's client code."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("airflow", "airflow_provider_ccp.protocol", "airflow_provider_ccp.auth", "airflow_provider_ccp.hooks")


def test_sandbox_imports_neither_airflow_nor_the_client() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_ccp.sandbox.__main__, airflow_provider_ccp.sandbox.embedded\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow' or m in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
