"""The sandbox's Python API for tests: run it in a thread or a process of its own, and steer it.

Importing this imports no test framework; the pytest fixtures live in ``ccp_sandbox.pytest_plugin``,
which pytest loads by itself once ``ccp-sandbox`` is installed (entry point ``pytest11``).
"""

from __future__ import annotations

from ccp_sandbox.admin_client import SandboxAdmin, SandboxAdminError
from ccp_sandbox.embedded import SandboxProcess, SandboxServer

__all__ = ["SandboxAdmin", "SandboxAdminError", "SandboxProcess", "SandboxServer"]
