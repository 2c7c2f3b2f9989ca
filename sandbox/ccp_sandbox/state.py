"""The services one sandbox instance is made of, shared by its endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from ccp_sandbox.config import SandboxConfig
from ccp_sandbox.counters import Counters
from ccp_sandbox.faults import FaultStore
from ccp_sandbox.jobs import JobStore
from ccp_sandbox.methods import MethodCatalog
from ccp_sandbox.runner import JobRunner
from ccp_sandbox.tokens import TokenService


@dataclass
class SandboxState:
    config: SandboxConfig
    tokens: TokenService
    catalog: MethodCatalog
    jobs: JobStore = field(default_factory=JobStore)
    runner: JobRunner = field(default_factory=JobRunner)
    faults: FaultStore = field(default_factory=FaultStore)
    counters: Counters = field(default_factory=Counters)
    #: The job-status style in force: the configured one, until the admin API switches it.
    job_status: str = "ogc"
    #: ``GET /jobs`` lists every Method's jobs whatever ``processID`` asks, as some servers do (admin API).
    ignore_process_id: bool = False

    def __post_init__(self) -> None:
        self.job_status = self.config.job_status

    @classmethod
    def from_config(cls, config: SandboxConfig) -> SandboxState:
        return cls(
            config, TokenService(config), MethodCatalog(config.methods_dirs), runner=JobRunner(config.launch_seconds)
        )


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def base_url(request: Request) -> str:
    """Absolute URLs follow the Host the client used, like a server behind its public name."""
    return str(request.base_url).rstrip("/")
