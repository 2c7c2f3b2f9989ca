"""``ccp-sandbox``: run a local CCP + Keycloak stand-in (see docs/sandbox.md)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ccp_sandbox.airflow_connection import airflow_connection
from ccp_sandbox.config import (
    DEFAULT_CLIENTS,
    DEFAULT_CONTEXT,
    DEFAULT_PORT,
    DEFAULT_PUBLIC_CLIENT,
    DEFAULT_TOKEN_TTL,
    DEFAULT_USERS,
    JOB_STATUS_STYLES,
    TOKEN_PATH,
    SandboxConfig,
    is_loopback,
    parse_list,
    parse_pairs,
)
from ccp_sandbox.methods import MethodDefinitionError
from ccp_sandbox.server import bind_sandbox

REMOTE_REFUSAL = (
    "refusing to listen on {host}: the sandbox runs the shell scripts of its Method definitions "
    "with your privileges, so anyone who can reach it can run commands on this machine. "
    "Use a loopback address, or pass --allow-remote if you really mean it."
)


def _pairs(what: str) -> Callable[[str], dict[str, str]]:
    def parse(text: str) -> dict[str, str]:
        try:
            return parse_pairs(text, what)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _joined(pairs: dict[str, str]) -> str:
    return ",".join(f"{name}:{secret}" for name, secret in pairs.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccp-sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (default: %(default)s)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    parser.add_argument(
        "--methods", action="append", type=Path, default=[], metavar="DIR", help="extra Method JSON folder (repeatable)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where job folders go (default: a new temporary folder, removed on exit)"
    )
    parser.add_argument(
        "--token-ttl",
        type=int,
        default=DEFAULT_TOKEN_TTL,
        help="access-token lifetime in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--users",
        type=_pairs("user"),
        default=dict(DEFAULT_USERS),
        help=f"user:password,... (default: {_joined(DEFAULT_USERS)})",
    )
    parser.add_argument(
        "--clients",
        type=_pairs("client"),
        default=dict(DEFAULT_CLIENTS),
        help=f"confidential clients id:secret,... (default: {_joined(DEFAULT_CLIENTS)})",
    )
    parser.add_argument(
        "--public-clients",
        type=parse_list,
        default=[],
        help=f"extra public client ids, besides {DEFAULT_PUBLIC_CLIENT}",
    )
    parser.add_argument(
        "--contexts",
        type=parse_list,
        default=[DEFAULT_CONTEXT],
        help="VRE contexts, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--admin", action="store_true", help="enable the unauthenticated /_sandbox/* fault-injection API"
    )
    parser.add_argument(
        "--ready-file", type=Path, help='write {"url", "pid", "token_url", "connection"} here once listening'
    )
    parser.add_argument(
        "--launch-seconds",
        type=float,
        default=0.0,
        help="how long each job stays 'accepted' before it runs, like CCP deploying a container (default: 0)",
    )
    parser.add_argument(
        "--job-status",
        choices=JOB_STATUS_STYLES,
        default="ogc",
        help="ogc: OGC API - Processes statusInfo; ccp: CCP's documented jobStatus, without finished, progress, "
        "processID and type, and with updated moving on every view (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        parser.error(REMOTE_REFUSAL.format(host=args.host))
    if args.token_ttl < 1:
        parser.error("--token-ttl must be at least 1 second")
    own_data_dir = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="ccp-sandbox-")) if own_data_dir else args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = SandboxConfig(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        token_ttl=args.token_ttl,
        users=args.users,
        clients=args.clients,
        public_clients=[DEFAULT_PUBLIC_CLIENT, *args.public_clients],
        contexts=args.contexts,
        methods_dirs=args.methods,
        admin=args.admin,
        launch_seconds=args.launch_seconds,
        job_status=args.job_status,
    )
    try:
        bound = bind_sandbox(config, lambda: _announce(bound.url, config, args.ready_file), args.log_level)
    except (MethodDefinitionError, OSError) as error:
        parser.exit(2, f"ccp-sandbox: {error}\n")

    def stop(signum: int, frame: FrameType | None) -> None:
        bound.server.handle_exit(signum, frame)

    # Until uvicorn installs its own handlers (and after it restores these), a signal still means "stop cleanly".
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        bound.serve()
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
        if own_data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def _announce(url: str, config: SandboxConfig, ready_file: Path | None) -> None:
    user, password = next(iter(config.users.items()))
    client_id, client_secret = next(iter(config.clients.items()))
    connection = airflow_connection(
        url,
        user=user,
        password=password,
        public_client_id=config.public_clients[0],
        client_id=client_id,
        client_secret=client_secret,
        context=config.contexts[0],
    )
    print(f"CCP sandbox listening on {url} (pid {os.getpid()})", flush=True)
    print(f"  token endpoint: {url}{TOKEN_PATH}")
    print(f"  context: {config.contexts[0]}; user {user!r}; public client {config.public_clients[0]!r}")
    admin = "on" if config.admin else "off"
    print(f"  job folders: {config.data_dir}; admin API: {admin}; job status: {config.job_status}")
    print(f"AIRFLOW_CONN_CCP_DEFAULT={shlex.quote(json.dumps(connection))}", flush=True)
    if ready_file is not None:
        ready: dict[str, Any] = {
            "url": url,
            "pid": os.getpid(),
            "token_url": url + TOKEN_PATH,
            "connection": connection,
        }
        partial = ready_file.with_name(ready_file.name + ".partial")
        partial.write_text(json.dumps(ready), encoding="utf-8")
        os.replace(partial, ready_file)


if __name__ == "__main__":
    sys.exit(main())
