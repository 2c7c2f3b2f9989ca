"""The doctor's steps on CCP's API: listings and their paging, a Method's description, jobs, one execution."""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_ccp import protocol
from airflow_provider_ccp.descriptions import MethodInput, is_ccp_description, method_inputs
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.inputs import prepare_inputs
from airflow_provider_ccp.protocol import StatusInfo
from ccp_airflow import errors, render
from ccp_airflow.doctor_state import Doctor, DoctorHook, Failed, Outcome, Step

__all__ = ["check_processes", "check_method", "check_submit", "check_jobs", "check_job_status"]


#: The first page asked with this limit shows whether the server pages at all.
PROBE_LIMIT = 2
JOBS_PAGE = 20
#: Two views of a job this far apart: a server whose ``updated`` has whole seconds still shows a move.
VIEW_GAP_SECONDS = 1.0
SUBMIT_POLL_SECONDS = 2.0


def _ccp_fix(d: Doctor, error: CCPError) -> str:
    settings, _ = d.ready
    if error.http_status in (401, 403):
        return errors.hint(error, settings, d.args.conn_id) or d.setting("context")
    if "text/html" in d.landing_type.lower():
        page = f"{settings.base_url} answers an HTML page, not CCP's JSON API (a proxy or login page?)"
        return f"{d.setting('host')}: {page}"
    return f"{d.setting('host')}: the base URL of CCP's OGC API (it answers GET /processes)"


def check_processes(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    url = protocol.processes_url(settings.base_url)
    try:
        probe = hook._get_json(url, params={"limit": PROBE_LIMIT})
        hook.pages.clear()
        methods = hook.list_methods()
    except CCPError as error:
        raise Failed(str(error), _ccp_fix(d, error)) from None
    shown = protocol.listed_items(probe, "processes")
    paged = isinstance(probe, dict) and protocol.next_link(probe, url) is not None
    ids = [str(method.get("id")) for method in methods]
    step.evidence.append(f"limit={PROBE_LIMIT}: {len(shown)} Method(s), {'a' if paged else 'no'} rel=next link")
    step.evidence.append(f"whole listing: {len(ids)} Method(s) over {len(hook.pages)} page(s) of limit 100")
    if len(shown) > PROBE_LIMIT:
        step.notes.append(f"the server ignores limit={PROBE_LIMIT} (it sent {len(shown)})")
    elif len(shown) == PROBE_LIMIT and not paged and len(ids) > PROBE_LIMIT:
        step.notes.append("a full page came without a rel=next link: Methods past a server's page would be missed")
    if len(set(ids)) != len(ids):
        step.notes.append("some Methods are listed twice: the server may ignore the page offset")
    if not ids:
        raise Failed(
            f"the context {settings.context} sees no Method", f"{d.setting('context')}: the VRE of your Methods"
        )
    d.method_id = d.args.submit or ids[0]


def _input_note(item: MethodInput) -> str:
    if item.required:
        return "required"
    shown = "optional" if not item.has_default else "default ***" if item.secret else f"default {item.default!r}"
    return f"{shown}, secret" if item.secret else shown


def check_method(d: Doctor, step: Step) -> None:
    _, hook = d.ready
    method_id = str(d.method_id)
    try:
        d.description = hook.get_method(method_id)
    except CCPError as error:
        fix = "--submit: a Method id that `ccp-airflow methods list` shows" if d.args.submit else _ccp_fix(d, error)
        raise Failed(str(error), fix) from None
    inputs = method_inputs(d.description)
    described = ", ".join(f"{item.id} ({_input_note(item)})" for item in inputs.values())
    version = d.description.get("version") or "no version"
    step.evidence.append(f"{method_id} ({d.description.get('title')}, {version}): {len(inputs)} input(s): {described}")
    kind = "CCP's: values go as strings" if is_ccp_description(d.description) else "OGC's: values go as their types"
    step.evidence.append(f"the description is {kind}")


def _jobs_page(hook: DoctorHook, url: str, params: dict[str, Any]) -> list[StatusInfo]:
    items = protocol.listed_items(hook._get_json(url, params=params), "jobs")
    return [job for item in items if (job := hook._picked(StatusInfo.from_json, item, "jobs")) is not None]


def check_jobs(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    url, method_id = protocol.jobs_url(settings.base_url), str(d.method_id)
    try:
        every = _jobs_page(hook, url, {"limit": JOBS_PAGE})
        only = _jobs_page(hook, url, {"limit": JOBS_PAGE, "processID": method_id})
    except CCPError as error:
        if error.http_status != 404:
            raise Failed(str(error), _ccp_fix(d, error)) from None
        step.notes.append(
            "no GET /jobs here: CCPExecutionEventTrigger and `jobs list` need it (`executions list` works)"
        )
        return
    d.job_id = d.job_id or (every[0].job_id if every else None)
    of_method = [job for job in every if job.process_id == method_id]
    others = [job for job in only if job.process_id not in (None, method_id)]
    step.evidence.append(f"limit={JOBS_PAGE}: {len(every)} job(s), {len(of_method)} of {method_id}")
    step.evidence.append(f"processID={method_id}: {len(only)} job(s), {len(others)} of other Methods")
    if others:
        step.notes.append("the server ignores processID: the provider drops other Methods' jobs itself")
    elif of_method and not only:
        step.notes.append(f"processID={method_id} lists none of the Method's jobs the plain listing shows")
    elif every and all(job.process_id is None for job in every):
        step.notes.append("jobs carry no processID: whether the filter holds cannot be told (the provider keeps them)")
    elif not every:
        step.notes.append("no job in this context yet: the filter is untested (--submit METHOD runs one)")


def check_submit(d: Doctor, step: Step) -> None:
    _, hook = d.ready
    method_id = d.args.submit
    if not method_id:
        step.outcome = Outcome.SKIPPED
        step.evidence.append("nothing submitted: --submit METHOD runs one execution")
        return
    try:
        inputs = prepare_inputs(method_id, d.description, {})
    except CCPError as error:
        raise Failed(str(error), "--submit: a Method whose required inputs all have defaults") from None
    submitted = hook.submit_execution(method_id, inputs, description=d.description)
    if not isinstance(submitted, StatusInfo):
        step.evidence.append("answered at once with results (a synchronous execution): no job to follow")
        return
    d.job_id = submitted.job_id
    render.emit(f"Submitted job {submitted.job_id} of Method {method_id}; following it to its end", stderr=True)
    final = hook.wait_for_job(submitted.job_id, poll_interval=SUBMIT_POLL_SECONDS)
    step.evidence.append(f"job {final.job_id}: {final.status}" + (f" ({final.message})" if final.message else ""))
    if not final.successful:
        logs = f"`ccp-airflow jobs outputs {final.job_id} --to DIR` has its logs"
        fix = f"none in the connection: the Method failed; {logs}"
        raise Failed(f"the execution ended {final.status}", fix)


def check_job_status(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    if d.job_id is None:
        step.outcome = Outcome.SKIPPED
        step.evidence.append("no job in this context to look at: --submit METHOD runs one")
        return
    url = protocol.job_url(settings.base_url, d.job_id)
    first = hook._get_json(url, job_id=d.job_id)
    hook.clock.sleep(VIEW_GAP_SECONDS)
    second = hook._get_json(url, job_id=d.job_id)
    status = protocol.read_status(json.dumps(second).encode(), url=url, job_id=d.job_id).status
    before, after = (view.get("updated") if isinstance(view, dict) else None for view in (first, second))
    finished = second.get("finished", "absent") if isinstance(second, dict) else "absent"
    step.evidence.append(f"job {d.job_id} ({status}): finished {finished}; updated {before}, then {after}")
    if finished == "absent":
        step.notes.append(
            "no `finished` (as in CCP's documented jobStatus): the provider takes a job's end from `updated`"
        )
    if before != after:
        step.notes.append(
            f"`updated` moved in {VIEW_GAP_SECONDS:g} s with nothing else changed: the provider tolerates it"
        )
