"""Runtime settings of one sandbox instance and the parsing of their command-line forms."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONTEXT = "/d4science.research-infrastructures.eu/D4OS/CCP-Sandbox"
DEFAULT_USERS = {"demo": "demo-password"}
DEFAULT_CLIENTS = {"ccp-service": "ccp-service-secret"}
DEFAULT_PUBLIC_CLIENT = "ccp-sandbox"
DEFAULT_PORT = 8765
DEFAULT_TOKEN_TTL = 300
REALM_PATH = "/auth/realms/d4science"
TOKEN_PATH = f"{REALM_PATH}/protocol/openid-connect/token"
INFRASTRUCTURE = "sandbox-local-bash"
#: How a job's status document looks: OGC API - Processes 1.0's statusInfo, or CCP's documented jobStatus
#: (no ``finished``, ``progress``, ``processID`` or ``type``; ``updated`` is the time of each view).
JOB_STATUS_STYLES = ("ogc", "ccp")


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that distinguishes one sandbox instance from another."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token_ttl: int = DEFAULT_TOKEN_TTL
    users: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    clients: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLIENTS))
    public_clients: Sequence[str] = (DEFAULT_PUBLIC_CLIENT,)
    contexts: Sequence[str] = (DEFAULT_CONTEXT,)
    methods_dirs: Sequence[Path] = ()
    admin: bool = False
    #: How long a job stays ``accepted`` before it runs, like CCP's launch and deploy of a container.
    launch_seconds: float = 0.0
    #: One of ``JOB_STATUS_STYLES``.
    job_status: str = "ogc"

    def __post_init__(self) -> None:
        if self.job_status not in JOB_STATUS_STYLES:
            raise ValueError(f"job_status must be one of {JOB_STATUS_STYLES}, got {self.job_status!r}")


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """Parse ``name:secret,name:secret`` (secrets may contain ':'; names may not)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, secret = item.partition(":")
        if not sep or not name or not secret:
            raise ValueError(f"{what} must look like name:secret, got {item!r}")
        pairs[name] = secret
    if not pairs:
        raise ValueError(f"at least one {what} is required")
    return pairs


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
