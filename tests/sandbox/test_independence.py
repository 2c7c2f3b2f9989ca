"""The sandbox is an independent peer: it must not import Airflow nor anything of the provider."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ccp_sandbox

FORBIDDEN = ("airflow", "airflow_provider_ccp")


def test_sandbox_imports_neither_airflow_nor_the_client() -> None:
    code = (
        "import sys\n"
        "import ccp_sandbox.__main__, ccp_sandbox.embedded, ccp_sandbox.testing\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_no_sandbox_module_names_the_provider() -> None:
    """Importing would pass here, where the provider is installed too; a lone ccp-sandbox would not start."""
    sources = Path(ccp_sandbox.__file__).parent.rglob("*.py")
    assert [path.name for path in sources if "airflow_provider_ccp" in path.read_text()] == []
