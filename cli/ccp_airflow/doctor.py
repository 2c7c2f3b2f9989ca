"""``ccp-airflow doctor``: each assumption the provider makes about a CCP and an account, checked in turn.

Every step goes through the provider's own code (``CCPHook``, its token flows, paging and status parsing),
so what passes here passes in a task. The first failure stops the run; what it prints never holds a
password, client secret or token (every text is scrubbed of them before it is shown).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

from rich.text import Text

from airflow_provider_ccp.exceptions import CCPError
from ccp_airflow import errors, render, verbose
from ccp_airflow.doctor_access import (
    check_connection,
    check_context,
    check_lifetime,
    check_network,
    check_token,
)
from ccp_airflow.doctor_api import (
    check_job_status,
    check_jobs,
    check_method,
    check_processes,
    check_submit,
)
from ccp_airflow.doctor_state import Doctor, Failed, Outcome, Step

__all__ = ["doctor", "run_steps", "SYMBOLS"]

SYMBOLS = {"ok": ("✓", "green"), "warn": ("✓", "yellow"), "fail": ("✗", "red"), "skipped": ("-", "dim")}
SYMBOLS["not run"] = ("·", "dim")

STEPS: tuple[tuple[str, str, Callable[[Doctor, Step], None]], ...] = (
    ("connection", "Connection fields", check_connection),
    ("network", "DNS, TCP and TLS", check_network),
    ("token", "Token flow", check_token),
    ("context", "UMA / context", check_context),
    ("lifetime", "Token lifetime and refresh", check_lifetime),
    ("processes", "GET /processes and its paging", check_processes),
    ("method", "A Method's description", check_method),
    ("submit", "One execution (--submit)", check_submit),
    ("jobs", "GET /jobs and its processID filter", check_jobs),
    ("job_status", "jobStatus: finished and updated", check_job_status),
)


# --------------------------------------------------------------------------- running and reporting


def _run_one(d: Doctor, step: Step, check: Callable[[Doctor, Step], None]) -> None:
    again = "rerun with --verbose to see the HTTP exchange"
    try:
        check(d, step)
    except Failed as failure:
        step.evidence.append(str(failure))
        step.outcome, step.fix = Outcome.FAIL, failure.fix
    except Exception as error:  # a server answer no check foresaw: reported as the step's failure, never a traceback
        step.evidence.append(str(error) if isinstance(error, CCPError) else f"{type(error).__name__}: {error}")
        hint = errors.hint(error, d.settings, d.args.conn_id) if isinstance(error, CCPError) else None
        step.outcome, step.fix = Outcome.FAIL, hint or again
    else:
        if step.outcome == Outcome.NOT_RUN:
            step.outcome = Outcome.WARN if step.notes else Outcome.OK


def run_steps(d: Doctor) -> Iterator[Step]:
    """Each step once it ran, then the ones a failure left not run."""
    failed = False
    for name, title, check in STEPS:
        step = Step(name, title)
        if not failed:
            _run_one(d, step, check)
            failed = step.outcome == Outcome.FAIL
        yield step


def _scrubbed(d: Doctor, step: Step) -> dict[str, Any]:
    def scrub(text: str) -> str:
        for secret in d.secrets():
            text = text.replace(secret, "***")
        return text

    return {
        "name": step.name,
        "title": step.title,
        "outcome": str(step.outcome),
        "evidence": [scrub(text) for text in step.evidence],
        "notes": [scrub(text) for text in step.notes],
        "fix": scrub(step.fix) if step.fix else None,
    }


def _print(number: int, step: dict[str, Any]) -> None:
    symbol, style = SYMBOLS[step["outcome"]]
    heading = Text.assemble((f"{symbol} ", style), (f"{number}. {step['title']}", "bold"))
    if step["outcome"] in (Outcome.SKIPPED, Outcome.NOT_RUN):
        heading.append(f"  ({step['outcome']})", style="dim")
    lines = [heading] + [render.plain(f"    {text}") for text in step["evidence"]]
    lines += [Text(f"    note: {render.clean(text)}", style="yellow") for text in step["notes"]]
    if step["fix"]:
        lines.append(Text(f"    fix: {render.clean(step['fix'])}", style="red"))
    for line in lines:
        render.console().print(line)


def doctor(args: argparse.Namespace) -> int:
    verbose.configure_logging(args.verbose)
    d = Doctor(args)
    report: list[dict[str, Any]] = []
    try:
        for number, step in enumerate(run_steps(d), start=1):
            report.append(_scrubbed(d, step))
            if not args.json:
                _print(number, report[-1])
    except KeyboardInterrupt:
        return 130
    failed = [step for step in report if step["outcome"] == Outcome.FAIL]
    if args.json:
        render.emit(data={"conn_id": args.conn_id, "url": args.url, "ok": not failed, "steps": report}, as_json=True)
    elif failed:
        render.emit(f'Stopped at "{failed[0]["title"]}": fix that, then run the doctor again', stderr=True)
    else:
        render.emit("Every check passed: the provider's assumptions hold for this CCP and account")
    return 1 if failed else 0
