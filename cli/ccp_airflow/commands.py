"""The subcommands: each takes the parsed arguments and a hook, prints, and returns an exit code."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from airflow_provider_ccp import archives, outputs
from airflow_provider_ccp.execution_records import record_status
from airflow_provider_ccp.hooks.ccp import CCPHook, OutputsKind
from ccp_airflow import render
from ccp_airflow.dag_template import DagOptions, DagTemplateError, default_dag_id, render_dag

__all__ = [
    "methods_list",
    "methods_describe",
    "jobs_status",
    "jobs_list",
    "executions_list",
    "jobs_dismiss",
    "jobs_outputs",
    "dag",
]


def methods_list(args: argparse.Namespace, hook: CCPHook) -> int:
    methods = [method for method in hook.list_methods() if not args.search or render.matches(method, args.search)]
    render.emit(render.methods_table(methods), data=methods, as_json=args.json)
    return 0


def methods_describe(args: argparse.Namespace, hook: CCPHook) -> int:
    method = hook.get_method(args.method_id)
    render.emit(render.method_view(method), data=method, as_json=args.json)
    return 0


def jobs_status(args: argparse.Namespace, hook: CCPHook) -> int:
    status = hook.get_job(args.job_id)
    render.emit(render.job_view(status), data=status.to_dict(), as_json=args.json)
    return 0


def jobs_list(args: argparse.Namespace, hook: CCPHook) -> int:
    statuses = hook.list_jobs(status=args.status, method_id=args.method)
    render.emit(render.jobs_table(statuses), data=[status.to_dict() for status in statuses], as_json=args.json)
    return 0


def executions_list(args: argparse.Namespace, hook: CCPHook) -> int:
    statuses = [record_status(record) for record in hook.list_executions(method_id=args.method)]
    render.emit(
        render.jobs_table(statuses, title="CCP executions"),
        data=[status.to_dict() for status in statuses],
        as_json=args.json,
    )
    return 0


def jobs_dismiss(args: argparse.Namespace, hook: CCPHook) -> int:
    result = hook.dismiss_job(args.job_id)
    if not result.supported:
        render.emit(f"Error: {result.message} (hint: this server has no OGC dismiss)", stderr=True)
        return 1
    render.emit(result.message)
    return 0


def jobs_outputs(args: argparse.Namespace, hook: CCPHook) -> int:
    folder = Path(args.to)
    folder.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=render.console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"job {args.job_id}", total=None)
        downloaded = hook.download_outputs(
            args.job_id, folder, progress=lambda written, total: progress.update(task, completed=written, total=total)
        )
    # With --json the messages go to stderr and one JSON document to stdout.
    render.emit(f"Saved {downloaded.path} ({downloaded.size} bytes) from {downloaded.url}", stderr=args.json)
    summary: dict[str, object] = {
        "path": str(downloaded.path),
        "size": downloaded.size,
        "url": downloaded.url,
        "kind": downloaded.kind,
    }
    refused: list[str] = []
    target = folder / outputs.EXTRACT_DIR
    if args.extract and downloaded.kind != OutputsKind.ZIP:
        render.emit(f"Nothing to extract: the server sent {downloaded.path.name}, not a zip", stderr=args.json)
    elif args.extract:
        # A new folder replaces output/ whole: a link planted in the old one is never written through,
        # and a failure leaves the old one as it was.
        published = outputs.storage_path(str(target))
        with outputs.staged(published) as staging:
            staging.mkdir(parents=True)
            files, refused = archives.extract_archive(downloaded.path, staging, published=published)
        render.emit(f"Extracted {len(files)} file(s) into {target}", stderr=args.json)
        summary |= {"extracted_to": str(target), "files": files, "refused": refused}
    render.emit(data=summary, as_json=args.json)
    if refused:
        render.emit(
            f"Error: refused {len(refused)} archive entr{'y' if len(refused) == 1 else 'ies'} that would "
            f"land outside {target}: {', '.join(refused)}",
            stderr=True,
        )
        return 1
    return 0


def _defaults(pairs: list[str]) -> dict[str, str]:
    defaults = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise DagTemplateError(f"--set {pair!r}: expected NAME=VALUE")
        defaults[name] = value
    return defaults


def dag(args: argparse.Namespace, hook: CCPHook) -> int:
    method = hook.get_method(args.method_id)
    options = DagOptions(
        dag_id=args.dag_id or default_dag_id(method),
        conn_id=args.conn_id,
        schedule=args.schedule,
        start=datetime.now(UTC).date(),
        defaults=_defaults(args.set),
    )
    # The Method's own words land in the DAG's comments and docstrings, and on the terminal without -o.
    source = render.clean(render_dag(method, options))
    # A generator bug must never hand the user a file that does not even parse.
    compile(source, args.output or "<dag>", "exec")
    if not args.output:
        sys.stdout.write(source)
        return 0
    target = Path(args.output)
    if target.exists() and not args.force:
        raise FileExistsError(f"{target} exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source, encoding="utf-8")
    render.emit(f"Wrote DAG {options.dag_id!r} for Method {args.method_id!r} to {target}", stderr=True)
    return 0
