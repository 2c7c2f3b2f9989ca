"""Fixtures of the sandbox's own tests (the sandbox fixtures themselves come from sandbox.testing)."""

from __future__ import annotations

import pytest
from ccp_client import CCP

from ccp_sandbox.testing import SandboxServer


@pytest.fixture
def ccp(sandbox: SandboxServer) -> CCP:
    return CCP(sandbox)
