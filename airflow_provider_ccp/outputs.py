"""Where a finished execution's outputs land, and how they get there safely.

``output.zip`` is streamed to local disk by the hook, its entries are checked (an entry must
stay inside the output folder: no absolute path, no ``..``, no link) and written through
``ObjectStoragePath``, so the same code serves a local folder, ``file://`` or ``s3://``.
Only paths, URIs and sizes leave this module: file content never goes into XCom.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf  # airflow.sdk's conf; airflow.configuration's on 3.1
from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp.exceptions import CCPDownloadError

if TYPE_CHECKING:
    from airflow_provider_ccp.hooks.ccp import CCPHook

log = logging.getLogger(__name__)

ARCHIVE_NAME = "output.zip"
EXTRACT_DIR = "output"
LOCAL_PROTOCOLS = frozenset({"file", "local"})
#: CCP's captured streams: ``stdout.<n>.txt`` in ``output.zip``, ``outputs_stdout.<n>.txt`` in archives.
STD_STREAM = re.compile(r"(?:^|/)(?:outputs_)?(?:stdout|stderr)[^/]*\.txt$")
COPY_CHUNK = 1024 * 1024
#: What zipfile raises when a member's data is damaged or unreadable (bad CRC, broken deflate stream,
#: truncated member, unknown compression); none of them is an OSError.
ARCHIVE_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
#: Executors that run every task on the scheduler's machine, where the default output folder is shared.
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def configured_output_root() -> str | None:
    """``[ccp] output_path`` (``AIRFLOW__CCP__OUTPUT_PATH``), or None when it is unset or empty."""
    value = conf.get("ccp", "output_path", fallback=None)
    return value.strip() or None if value else None


def default_output_root() -> str:
    """``[ccp] output_path``, else ``$AIRFLOW_HOME/ccp-outputs``; read when the task runs, not at parse time."""
    configured = configured_output_root()
    if configured:
        return configured
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(os.path.expandvars(home), "ccp-outputs")


def executor_name(task_executor: str | None) -> str:
    """The class name of the executor running a task: its own ``executor``, else the first configured one."""
    configured = conf.get("core", "executor", fallback=None) or "LocalExecutor"
    name = task_executor or configured.split(",")[0]
    # Entries may be "alias:module.path.Class", "module.path.Class" or "Class".
    return name.strip().rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def local_outputs_warning(output_path: str | None, task_executor: str | None) -> str | None:
    """Why outputs in the local default folder will not reach downstream tasks, or None when they will.

    Only the default warns: an explicit local ``output_path`` may well be a shared mount.
    """
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
    if "://" in location:
        return ObjectStoragePath(location)
    return ObjectStoragePath("file://" + os.path.abspath(os.path.expanduser(location)))


def _segment(value: Any) -> str:
    # A run id may hold characters that would add a level to the path.
    return str(value).replace("/", "_").replace("\\", "_")


def task_output_path(
    root: str | None, dag_id: str, run_id: str, task_id: str, map_index: int | None
) -> ObjectStoragePath:
    """``<root>/<dag_id>/<run_id>/<task_id>[/<map_index>]``: one folder per task instance."""
    path = storage_path(root or default_output_root()) / _segment(dag_id) / _segment(run_id) / _segment(task_id)
    if map_index is not None and map_index >= 0:
        path = path / str(map_index)
    return path


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an archive entry must not be extracted, or None when it stays inside the folder."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if "\x00" in name:
        return "has a NUL byte in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "climbs out of the folder with '..'"
    if not parts:
        return "has no name once '.' and empty parts are dropped"
    return None


def _is_dir(info: zipfile.ZipInfo) -> bool:
    # ZipInfo.is_dir() raises IndexError for an entry with an empty name (Python 3.11).
    return info.filename.endswith("/")


@dataclass
class _Extracted:
    """The names extracted so far: a later entry must neither replace one nor pass through a file."""

    names: set[PurePosixPath] = field(default_factory=set)
    files: set[PurePosixPath] = field(default_factory=set)
    folders: set[PurePosixPath] = field(default_factory=set)

    def clash(self, path: PurePosixPath, is_dir: bool) -> str | None:
        if path in self.names:
            return "repeats the name of an earlier entry"
        if any(parent in self.files for parent in path.parents):
            return "lies under a file extracted earlier"
        if not is_dir and path in self.folders:
            return "is a file where an earlier entry made a folder"
        return None

    def add(self, path: PurePosixPath, is_dir: bool) -> None:
        self.names.add(path)
        (self.folders if is_dir else self.files).add(path)
        self.folders.update(path.parents)


@dataclass
class StoredOutputs:
    """What ``store_outputs`` wrote: the archive's URI, the extracted files and the refused entries."""

    archive: str
    files: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    tails: dict[str, list[str]] = field(default_factory=dict)


def _copy_stream(source: Any, target: ObjectStoragePath) -> None:
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)


def extract_archive(archive: Path, target: ObjectStoragePath) -> tuple[list[dict[str, Any]], list[str]]:
    """Write every safe entry of ``archive`` under ``target``; return (files, refused entries)."""
    files: list[dict[str, Any]] = []
    refused: list[str] = []
    extracted = _Extracted()
    with _open_zip(archive) as zf:
        for info in zf.infolist():
            relative, is_dir = PurePosixPath(info.filename.replace("\\", "/")), _is_dir(info)
            reason = unsafe_reason(info) or extracted.clash(relative, is_dir)
            if reason is None:
                destination = target.joinpath(*relative.parts)
                reason = _write_entry(zf, info, destination)
            if reason is not None:
                log.warning("Not extracting %r from %s: it %s", info.filename, archive.name, reason)
                refused.append(info.filename)
                continue
            extracted.add(relative, is_dir)
            if not is_dir:
                files.append({"path": relative.as_posix(), "uri": str(destination), "size": info.file_size})
    return files, refused


def _write_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: ObjectStoragePath) -> str | None:
    """Write one entry; a storage error refuses that entry only (the reason is returned), not the task."""
    try:
        if _is_dir(info):
            destination.mkdir(parents=True, exist_ok=True)
            return None
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as source:
            _copy_stream(source, destination)
    except OSError as err:
        with suppress(OSError):  # no half-written file left beside the listed ones
            destination.unlink(missing_ok=True)
        return f"could not be written: {err}"
    return None


def list_archive(archive: Path) -> list[dict[str, Any]]:
    """The archive's files without extracting them (``uri`` is None: they only exist inside the zip)."""
    with _open_zip(archive) as zf:
        return [
            {"path": info.filename, "uri": None, "size": info.file_size} for info in zf.infolist() if not _is_dir(info)
        ]


def read_tails(archive: Path, lines: int) -> dict[str, list[str]]:
    """The last ``lines`` lines of each stdout/stderr file inside ``archive``, read as a stream."""
    if lines <= 0:
        return {}
    tails: dict[str, list[str]] = {}
    with _open_zip(archive) as zf:
        for info in zf.infolist():
            if _is_dir(info) or not STD_STREAM.search(info.filename) or unsafe_reason(info):
                continue
            with zf.open(info) as member:
                last: deque[str] = deque(maxlen=lines)
                for raw in member:
                    last.append(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            tails[info.filename] = list(last)
    return tails


@contextmanager
def _open_zip(archive: Path) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise CCPDownloadError(f"The outputs archive {archive.name} is not a valid zip file: {err}") from None
    with zf:
        try:
            yield zf
        except ARCHIVE_READ_ERRORS as err:
            raise CCPDownloadError(f"The outputs archive {archive.name} could not be read: {err}") from err


def _is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def _reset(target: ObjectStoragePath) -> None:
    """Empty the task instance's own folder, so a retry never mixes its files with an earlier try's."""
    if target.exists():
        target.fs.rm(target.path, recursive=True)
    target.mkdir(parents=True, exist_ok=True)


@contextmanager
def _staging(target: ObjectStoragePath) -> Iterator[Path]:
    """A local folder for the download: the target itself when local, else a temporary one."""
    if _is_local(target):
        yield Path(target.path)
        return
    with tempfile.TemporaryDirectory(prefix="ccp-outputs-") as folder:
        yield Path(folder)


def store_outputs(
    hook: CCPHook, job_id: str, target: ObjectStoragePath, *, extract: bool, log_lines: int
) -> StoredOutputs:
    """Download the job's outputs into ``target`` (``output.zip`` and, when ``extract``, ``output/``)."""
    _reset(target)
    with _staging(target) as staging:
        downloaded = hook.download_outputs(job_id, staging)
        log.info("Downloaded %s (%d bytes) from %s", downloaded.path.name, downloaded.size, downloaded.url)
        archive = target / downloaded.path.name
        if not _is_local(target):
            with downloaded.path.open("rb") as source:
                _copy_stream(source, archive)
        if downloaded.kind != "zip":
            return StoredOutputs(archive=str(archive))
        if extract:
            files, refused = extract_archive(downloaded.path, target / EXTRACT_DIR)
        else:
            files, refused = list_archive(downloaded.path), []
        return StoredOutputs(str(archive), files, refused, read_tails(downloaded.path, log_lines))


def fetch_tails(hook: CCPHook, job_id: str, lines: int) -> dict[str, list[str]]:
    """The stdout/stderr tails of a job, from a throw-away download of its outputs."""
    with tempfile.TemporaryDirectory(prefix="ccp-logs-") as folder:
        downloaded = hook.download_outputs(job_id, folder)
        return read_tails(downloaded.path, lines) if downloaded.kind == "zip" else {}


def log_tails(tails: dict[str, list[str]], logger: logging.Logger | Any, *, level: int = logging.INFO) -> None:
    """Copy the tails into the task log, one block per non-empty file."""
    for name, lines in tails.items():
        if not lines:
            continue
        logger.log(level, "----- last %d line(s) of %s -----\n%s", len(lines), name, "\n".join(lines))
