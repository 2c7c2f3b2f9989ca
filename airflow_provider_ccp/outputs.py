"""Where a finished execution's outputs land, and how they get there safely.

``output.zip`` is streamed to local disk by the hook, its entries are checked and extracted by
``airflow_provider_ccp.archives`` through ``ObjectStoragePath``, so the same code serves a local folder, ``file://``
or ``s3://``. Everything is written to a staging folder beside the task's folder and swapped in only when complete,
with a ``manifest.json`` listing it: a reader sees the old outputs or the new ones, never a mix. Only paths, URIs and
sizes leave this module: file content never goes into XCom.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp import archives
from airflow_provider_ccp.archives import ExtractionLimits, is_local
from airflow_provider_ccp.hooks.ccp import DownloadedOutputs, OutputsKind
from airflow_provider_ccp.version_compat import conf

if TYPE_CHECKING:
    from airflow_provider_ccp.hooks.ccp import CCPHook
    from airflow_provider_ccp.protocol import SyncResults

__all__ = ["StoredOutputs", "store_outputs", "store_results", "task_output_path", "staged"]

log = logging.getLogger(__name__)

EXTRACT_DIR = "output"
MANIFEST_NAME = "manifest.json"
#: Executors that run every task on the scheduler's machine, where the default output folder is shared.
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})

#: Entries (files, refused names) listed in the XCom manifest; the full listing is in manifest.json.
XCOM_LIST_LIMIT = 100
#: Longest path segment written: file systems allow 255 bytes, and the staging names add a few.
SEGMENT_MAX = 200


def configured_output_root() -> str | None:
    """``[ccp] output_path`` (``AIRFLOW__CCP__OUTPUT_PATH``), or None when it is unset or empty."""
    return (conf.get("ccp", "output_path", fallback=None) or "").strip() or None


def default_output_root() -> str:
    """``[ccp] output_path``, else ``$AIRFLOW_HOME/ccp-outputs``; read when the task runs, not at parse time."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return configured_output_root() or os.path.join(os.path.expandvars(home), "ccp-outputs")


def executor_name(task_executor: str | None) -> str:
    """The class name of the executor running a task: its own ``executor``, else the first configured one."""
    configured = conf.get("core", "executor", fallback=None) or "LocalExecutor"
    name = task_executor or configured.split(",")[0]
    # Entries may be "alias:module.path.Class", "module.path.Class" or "Class".
    return name.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def local_outputs_warning(output_path: str | None, task_executor: str | None) -> str | None:
    """Why outputs in the local default folder will not reach downstream tasks, or None when they will (only
    the default warns: an explicit local ``output_path`` may well be a shared mount)."""
    if output_path or configured_output_root():
        return None
    executor = executor_name(task_executor)
    # A KubernetesExecutor pod may say LocalExecutor in its own configuration; this variable tells.
    if executor in LOCAL_EXECUTORS and not os.environ.get("AIRFLOW_IS_K8S_EXECUTOR_POD"):
        return None
    return (
        f"CCP outputs go to {default_output_root()} on this worker's local disk, but tasks run on the "
        f"{executor}: a downstream task on another machine cannot read them. Set [ccp] output_path "
        "(e.g. AIRFLOW__CCP__OUTPUT_PATH=s3://<conn_id>@<bucket>/ccp-outputs) or the operator's output_path "
        "to storage every worker can reach (docs/deployment.md)."
    )


def storage_path(location: str) -> ObjectStoragePath:
    """A URI (``s3://bucket/prefix``, ``file:///data``) as is; a plain path becomes an absolute ``file://`` URI."""
    uri = location if "://" in location else "file://" + os.path.abspath(os.path.expanduser(location))
    return ObjectStoragePath(uri)


# Airflow run ids hold ":" and "+" (manual__2025-01-01T00:00:00+00:00): kept as they are, like letters.
_SEGMENT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+=@,~:")


def path_segment(value: Any) -> str:
    """One folder name for any Airflow id, never ``.``, ``..``, empty, hidden or more than one level.
    Percent-encodes every byte outside a safe set (``/``, ``\\``, NUL, ``%`` ...) and a leading dot, so distinct
    ids get distinct names and none starts with the dot the staging folders use; the empty id becomes ``%``,
    which no encoding produces; a very long one is cut and suffixed by its hash."""
    raw = str(value).encode("utf-8", "surrogatepass")
    if not raw:
        return "%"
    encoded = "".join(chr(byte) if chr(byte) in _SEGMENT_SAFE else f"%{byte:02X}" for byte in raw)
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > SEGMENT_MAX:
        digest = hashlib.sha256(raw).hexdigest()[:16]
        encoded = f"{encoded[: SEGMENT_MAX - 17]}%{digest}"
    return encoded


def task_output_path(
    root: str | None, dag_id: str, run_id: str, task_id: str, map_index: int | None
) -> ObjectStoragePath:
    """``<root>/<dag_id>/<run_id>/<task_id>[/<map_index>]``: one folder per task instance, each id one level."""
    path = storage_path(root or default_output_root())
    ids: list[Any] = [dag_id, run_id, task_id]
    if map_index is not None and map_index >= 0:
        ids.append(map_index)
    return path.joinpath(*(path_segment(value) for value in ids))


@dataclass
class StoredOutputs:
    """What ``store_outputs`` wrote: the archive's URI, the extracted files and the entries left out."""

    archive: str
    files: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    tails: dict[str, list[str]] = field(default_factory=dict)
    #: Entries not extracted because they carry the execution's inputs and one of them was secret.
    withheld: list[str] = field(default_factory=list)
    manifest: str | None = None

    def listing(self) -> dict[str, Any]:
        """Everything ``manifest.json`` holds."""
        return {"archive": self.archive, "files": self.files, "refused": self.refused, "withheld": self.withheld}

    def for_xcom(self) -> dict[str, Any]:
        """The listing cut to ``XCOM_LIST_LIMIT`` names per list, with the full counts and where the rest is."""
        return {
            "archive": self.archive,
            "manifest": self.manifest,
            "files": self.files[:XCOM_LIST_LIMIT],
            "file_count": len(self.files),
            "refused": self.refused[:XCOM_LIST_LIMIT],
            "refused_count": len(self.refused),
            "withheld": self.withheld[:XCOM_LIST_LIMIT],
        }


def _sibling(target: ObjectStoragePath, kind: str) -> ObjectStoragePath:
    """A fresh folder name beside ``target`` that only this task's folder can own (ids never start with '.')."""
    return target.parent / f".{target.name}.ccp-{kind}-{secrets.token_hex(4)}"


def _remove(path: ObjectStoragePath) -> None:
    """Best effort, as cleaning up must never hide the error that made it necessary. A local link or file
    goes as itself (never what it points to), a folder whole."""
    with suppress(OSError):
        if not is_local(path):
            if path.exists():
                path.fs.rm(path.path, recursive=True)
        elif os.path.islink(path.path) or not os.path.isdir(path.path):
            os.unlink(path.path)
        else:
            shutil.rmtree(path.path)


def _clear_leftovers(target: ObjectStoragePath) -> None:
    """Staging folders a killed try left beside the task's folder; nothing else is touched."""
    if not target.parent.exists():
        return
    # Exactly the names _sibling makes: a prefix would also match the staging folder of a task
    # whose id starts with this one's followed by ".ccp-".
    own = re.compile(rf"\.{re.escape(target.name)}\.ccp-(?:staging|old)-[0-9a-f]{{8}}")
    for entry in target.parent.iterdir():
        if own.fullmatch(entry.name):
            _remove(entry)


def _swap(staging: ObjectStoragePath, target: ObjectStoragePath) -> None:
    """Put the complete ``staging`` folder where ``target`` is; the old outputs go only once it is there."""
    if not is_local(target):
        # Object stores have no folders to rename (s3fs cannot move a prefix whose "folder" key was never
        # written): the old files go once the new ones are all written, then each file moves on its own.
        _remove(target)
        prefix = staging.path.rstrip("/") + "/"
        for source in target.fs.find(staging.path):
            target.fs.mv(source, target.path.rstrip("/") + "/" + source.removeprefix(prefix))
        _remove(staging)
        return
    previous = _sibling(target, "old")
    had_outputs = os.path.lexists(target.path)  # a dangling link is still in the way
    if had_outputs:
        os.rename(target.path, previous.path)
    try:
        os.rename(staging.path, target.path)
    except OSError:
        if had_outputs:
            os.rename(previous.path, target.path)
        raise
    if had_outputs:
        _remove(previous)


@contextmanager
def staged(target: ObjectStoragePath) -> Iterator[ObjectStoragePath]:
    """A fresh staging folder's name beside ``target``, swapped in when the block ends well, else removed."""
    _clear_leftovers(target)
    staging = _sibling(target, "staging")
    try:
        yield staging
        _swap(staging, target)
    except BaseException:
        _remove(staging)
        raise


@contextmanager
def _download_folder(staging: ObjectStoragePath) -> Iterator[Path]:
    """A local folder for the download: the staging folder itself when local, else a temporary one."""
    if is_local(staging):
        Path(staging.path).mkdir(parents=True)
        yield Path(staging.path)
        return
    with tempfile.TemporaryDirectory(prefix="ccp-outputs-") as folder:
        yield Path(folder)


def store_outputs(
    hook: CCPHook,
    job_id: str,
    target: ObjectStoragePath,
    *,
    extract: bool,
    log_lines: int,
    limits: ExtractionLimits | None = None,
    secret_inputs: bool = False,
) -> StoredOutputs:
    """Download the job's outputs into ``target`` (``output.zip``, ``manifest.json`` and, when ``extract``,
    ``output/``), replacing an earlier try's only once everything is downloaded and extracted. With ``secret_inputs``
    (a secret input was sent), ``ccp-entrypoint.sh`` and ``ccpenv`` are not extracted and a local ``output.zip``,
    which still holds them, is made owner-only."""
    fetch = functools.partial(hook.download_outputs, job_id)
    return _store(fetch, target, extract=extract, log_lines=log_lines, limits=limits, secret_inputs=secret_inputs)


def store_results(results: SyncResults, target: ObjectStoragePath, *, secret_inputs: bool = False) -> StoredOutputs:
    """Put the results a server answered a sync execution with into ``target``, as ``store_outputs`` would
    put a job's ``results.json`` (and its ``manifest.json``)."""
    return _store(functools.partial(_write_results, results), target, secret_inputs=secret_inputs)


def _write_results(results: SyncResults, folder: Path) -> DownloadedOutputs:
    path = folder / results.file_name
    path.write_bytes(results.body)
    return DownloadedOutputs(
        path=path, size=len(results.body), url="the answer to the execution request", kind=OutputsKind.JSON
    )


def _store(
    fetch: Callable[[Path], DownloadedOutputs],
    target: ObjectStoragePath,
    *,
    extract: bool = False,
    log_lines: int = 0,
    limits: ExtractionLimits | None = None,
    secret_inputs: bool = False,
) -> StoredOutputs:
    """Fill a staging folder (the download, extracted files, manifest.json), every URI naming its place under
    ``target``, then swap it in."""
    with staged(target) as staging, _download_folder(staging) as folder:
        download = fetch(folder)
        name = download.path.name
        log.info("Downloaded %s (%d bytes) from %s", name, download.size, download.url)
        if not is_local(staging):
            with download.path.open("rb") as source:
                archives.copy_stream(source, staging / name)
        elif secret_inputs:
            os.chmod(download.path, 0o600)
        stored = StoredOutputs(archive=str(target / name), manifest=str(target / MANIFEST_NAME))
        if download.kind == OutputsKind.ZIP:
            if extract:
                stored.files, stored.refused = archives.extract_archive(
                    download.path,
                    staging / EXTRACT_DIR,
                    limits=limits,
                    published=target / EXTRACT_DIR,
                    withhold_inputs=secret_inputs,
                )
            else:
                stored.files = archives.list_archive(download.path)
            if secret_inputs:
                with archives.open_zip(download.path) as zf:
                    stored.withheld = [entry for entry in zf.namelist() if archives.carries_inputs(entry)]
            stored.tails = archives.read_tails(download.path, log_lines)
        with (staging / MANIFEST_NAME).open("w") as out:
            json.dump(stored.listing(), out, indent=1)
    return stored
