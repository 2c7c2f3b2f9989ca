"""``ccp-airflow``: browse CCP Methods and jobs, and write a DAG from a Method (docs/cli.md).

Help, ``--version`` and argument errors answer without importing Airflow (seconds of start-up): only a
command that talks to CCP imports the hook, and with it Airflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import TYPE_CHECKING

__all__ = ["main", "build_parser", "Command", "CONNECTION_FLAGS", "flag_dest"]

#: The ccp-airflow distribution's own version (the build reads it here, as the provider's and the sandbox's).
__version__ = "0.1.0"

# Set before Airflow is imported: Airflow 3.1 logs its ORM set-up at INFO on import, and a command
# line prints only its own output (--verbose turns logging back up once arguments are parsed).
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")

from airflow_provider_ccp.connection_fields import DEFAULT_AUTH_FLOW, FIELDS, TOKEN_ENDPOINT_FIELD
from airflow_provider_ccp.get_provider_info import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_provider_ccp.connection import CCPConnectionSettings
    from airflow_provider_ccp.hooks.ccp import CCPHook

Command = Callable[[argparse.Namespace, "CCPHook"], int]
#: The connection's fields (connection_fields) the command line sets with ``--url``: each one's flag and help.
CONNECTION_FLAGS = {
    "host": ("--url", "CCP base URL: connect with the flags below instead of an Airflow connection"),
    "login": ("--user", "D4Science user (with --url)"),
    "password": ("--password", "password or token (with --url); better: env CCP_PASSWORD, or the prompt"),
    "context": ("--context", "D4Science context, e.g. /d4science.research-infrastructures.eu/D4OS/Lab (with --url)"),
    "client_id": ("--client-id", "Keycloak client id (with --url)"),
    "client_secret": ("--client-secret", "service-account secret (with --url); better: env CCP_CLIENT_SECRET"),
    TOKEN_ENDPOINT_FIELD: ("--token-url", "Keycloak token endpoint (with --url)"),
    "auth_flow": ("--auth-flow", f"how to get a token (with --url); default {DEFAULT_AUTH_FLOW}"),
}
DESCRIPTION = (
    "Browse CCP Methods and jobs, and write a DAG from a Method. Global options (connection, "
    "--verbose, --json) go before or after the command. Docs: "
    "https://github.com/airflow-provider-ccp/airflow-provider-ccp/blob/main/docs/cli.md"
)


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the subcommand, as with ``airflow`` and ``kubectl``.

    The top-level copy holds the defaults; the copies on each subcommand default to SUPPRESS, so a
    subcommand that is not given an option leaves the value parsed before it untouched.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="show the HTTP exchange and tracebacks"
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of a table")
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--conn-id",
        default=default(DEFAULT_CONN_ID),
        help=f"Airflow connection to use (and to name in a generated DAG); default: {DEFAULT_CONN_ID}",
    )
    # In CONNECTION_FLAGS' order: the one with a long list of choices (its schema's enum) last.
    schemas = {spec.key: spec.schema or {} for spec in FIELDS}
    for key, (flag, help_text) in CONNECTION_FLAGS.items():
        group.add_argument(flag, default=default(None), help=help_text, choices=schemas[key].get("enum"))
    return parser


def _methods(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    methods = commands.add_parser("methods", help="browse Methods").add_subparsers(dest="action", required=True)
    listing = methods.add_parser("list", parents=[common], help="list the Methods of the context")
    listing.add_argument("--search", help="keep Methods whose id, title, description or keywords contain TEXT")
    listing.set_defaults(func="methods_list")
    describe = methods.add_parser("describe", parents=[common], help="show a Method's inputs and outputs")
    describe.add_argument("method_id", metavar="METHOD_ID")
    describe.set_defaults(func="methods_describe")


def _jobs(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    jobs = commands.add_parser("jobs", help="inspect executions").add_subparsers(dest="action", required=True)
    status = jobs.add_parser("status", parents=[common], help="a job's status")
    status.add_argument("job_id", metavar="JOB_ID")
    status.set_defaults(func="jobs_status")
    listing = jobs.add_parser(
        "list", parents=[common], help="list jobs (OGC GET /jobs; on a CCP without it: executions list)"
    )
    listing.add_argument("--status", help="only jobs in this status (accepted, running, successful, failed, ...)")
    listing.add_argument("--method", metavar="METHOD_ID", help="only jobs of this Method")
    listing.set_defaults(func="jobs_list")
    dismiss = jobs.add_parser("dismiss", parents=[common], help="cancel a job (OGC DELETE /jobs/{id})")
    dismiss.add_argument("job_id", metavar="JOB_ID")
    dismiss.set_defaults(func="jobs_dismiss")
    fetch = jobs.add_parser("outputs", parents=[common], help="download a job's output.zip")
    fetch.add_argument("job_id", metavar="JOB_ID")
    fetch.add_argument("--to", required=True, metavar="DIR", help="folder to save output.zip in")
    fetch.add_argument("--extract", action="store_true", help="also extract it into DIR/output (safely)")
    fetch.set_defaults(func="jobs_outputs")


def _executions(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    executions = commands.add_parser("executions", help="CCP's execution history").add_subparsers(
        dest="action", required=True
    )
    listing = executions.add_parser(
        "list", parents=[common], help="list executions, newest first (CCP GET /executions)"
    )
    listing.add_argument("--method", metavar="METHOD_ID", help="only executions of this Method")
    listing.set_defaults(func="executions_list")


def _dag(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    dag = commands.add_parser("dag", parents=[common], help="write a DAG that runs a Method, with a Param per input")
    dag.add_argument("method_id", metavar="METHOD_ID")
    dag.add_argument("--dag-id", help="default: ccp_<method title>")
    dag.add_argument("--schedule", metavar="CRON", help="cron expression or preset (default: none, manual runs)")
    dag.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="default for an input's Param (repeatable)"
    )
    dag.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    dag.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    dag.set_defaults(func="dag")


def _doctor(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doctor = commands.add_parser(
        "doctor", parents=[common], help="check, step by step, that the provider works with this CCP and account"
    )
    doctor.add_argument(
        "--submit",
        metavar="METHOD_ID",
        help="also run one execution of this Method, with its defaults, to its end (without it nothing is submitted)",
    )
    doctor.set_defaults(func="doctor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ccp-airflow", description=DESCRIPTION, parents=[_global_options(False)])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = _global_options(True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _methods(commands, common)
    _jobs(commands, common)
    _executions(commands, common)
    _dag(commands, common)
    _doctor(commands, common)
    # Its own options are the sandbox's business: everything after the word is handed over untouched.
    commands.add_parser("sandbox", add_help=False, help="run the CCP sandbox (same as ccp-sandbox; try: sandbox -h)")
    return parser


def _run(args: argparse.Namespace, command: Command) -> int:
    from ccp_airflow import errors, verbose
    from ccp_airflow.connect import CLIHook, resolve_settings

    verbose.configure_logging(args.verbose)
    settings: CCPConnectionSettings | None = None  # stays None when resolving it is what failed
    hook: CLIHook | None = None
    try:
        settings = resolve_settings(args)
        hook = CLIHook(args.conn_id, settings)
        if args.verbose:
            verbose.trace(hook.session)
            verbose.trace(hook.token_session)
        return command(args, hook)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if args.verbose:
            from rich.console import Console

            Console(file=sys.stderr).print_exception(show_locals=False)  # locals may hold secrets
        transport_error = hook.transport_error if hook is not None else None
        print(errors.one_line(error, settings, args.conn_id, transport_error), file=sys.stderr)
        return 1


def run_sandbox(argv: Sequence[str]) -> int:
    """The sandbox ships apart from the provider (it is development tooling, not runtime code)."""
    try:
        from ccp_sandbox.__main__ import main as sandbox_main
    except ImportError:
        print(
            "ccp-airflow sandbox needs the ccp-sandbox package: pip install ./sandbox from a clone of "
            "airflow-provider-ccp",
            file=sys.stderr,
        )
        return 1
    return sandbox_main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "sandbox":
        return run_sandbox(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    stray = flags_without_url(args)
    if stray:
        parser.error(f"{', '.join(stray)} only apply with --url (to use an Airflow connection, pass --conn-id)")
    # Only now, with a command to run, is Airflow imported (through the hook the command uses).
    if args.command == "doctor":  # it reports a connection that cannot be read as its first step
        return int(import_module("ccp_airflow.doctor").doctor(args))
    return _run(args, getattr(import_module("ccp_airflow.commands"), args.func))


def flags_without_url(args: argparse.Namespace) -> list[str]:
    """Connection flags given without ``--url``: they would be silently ignored, so they are refused."""
    flags = [flag for key, (flag, _) in CONNECTION_FLAGS.items() if key != "host"]
    return [flag for flag in flags if getattr(args, flag_dest(flag)) is not None and not args.url]


def flag_dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")
