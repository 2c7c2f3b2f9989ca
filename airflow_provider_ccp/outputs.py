"""Where a finished execution's outputs land, and how they get there safely.

``output.zip`` is streamed to local disk by the hook, its entries are checked (an entry must
stay inside the output folder: no absolute path, no ``..``, no link; the archive must stay within
``ExtractionLimits``) and written through ``ObjectStoragePath``, so the same code serves a local
folder, ``file://`` or ``s3://``. Everything is written to a staging folder beside the task's folder
and swapped in only when complete: a reader sees the old outputs or the new ones, never a mix.
Only paths, URIs and sizes leave this module: file content never goes into XCom.
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
import stat
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp.exceptions import CCPDownloadError, CCPOutputLimitError
from airflow_provider_ccp.hooks.ccp import OutputsKind
from airflow_provider_ccp.version_compat import conf

if TYPE_CHECKING:
    from airflow_provider_ccp.hooks.ccp import CCPHook, DownloadedOutputs
    from airflow_provider_ccp.protocol import SyncResults

__all__ = [
    "ExtractionLimits",
    "StoredOutputs",
    "store_outputs",
    "store_results",
    "fetch_tails",
    "log_tails",
    "read_tails",
    "extract_archive",
    "list_archive",
    "task_output_path",
    "local_outputs_warning",
    "configured_output_root",
    "default_output_root",
    "storage_path",
    "path_segment",
    "executor_name",
    "unsafe_reason",
    "carries_inputs",
    "ARCHIVE_NAME",
    "EXTRACT_DIR",
    "MANIFEST_NAME",
]

log = logging.getLogger(__name__)

ARCHIVE_NAME = "output.zip"
EXTRACT_DIR = "output"
MANIFEST_NAME = "manifest.json"
LOCAL_PROTOCOLS = frozenset({"file", "local"})
#: CCP's captured streams: ``stdout.<n>.txt`` in ``output.zip``, ``outputs_stdout.<n>.txt`` in archives.
STD_STREAM = re.compile(r"(?:^|/)(?:outputs_)?(?:stdout|stderr)[^/]*\.txt$")
#: Files CCP writes with the execution's input values in them (the rendered script, the environment).
INPUT_FILES = frozenset({"ccp-entrypoint.sh", "ccpenv"})
COPY_CHUNK = 1024 * 1024
#: What zipfile raises when a member's data is damaged or unreadable (bad CRC, broken deflate stream,
#: truncated member, unknown compression, a password needed: RuntimeError); none of them is an OSError.
#: RecursionError (a RuntimeError too) is the folder creation of a path deeper than ``MAX_ENTRY_DEPTH``
#: would let through, should a storage overflow sooner than the local disk does.
ARCHIVE_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
#: Executors that run every task on the scheduler's machine, where the default output folder is shared.
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})

#: Entries (files, refused names) listed in the XCom manifest; the full listing is in manifest.json.
XCOM_LIST_LIMIT = 100
#: A std stream larger than this is not read for its tail: decompressing it all would cost minutes.
TAIL_READ_LIMIT = 64 * 1024 * 1024
#: Below this many extracted bytes the compression ratio is not checked: small text compresses well.
RATIO_CHECK_FLOOR = 64 * 1024 * 1024
#: Longest path segment written: file systems allow 255 bytes, and the staging names add a few.
SEGMENT_MAX = 200
#: Folders an entry may lie under: deeper than any real output, far below the ~1,000 levels at which
#: creating the folders overflows Python's stack (RecursionError), and under PATH_MAX for short names.
MAX_ENTRY_DEPTH = 200
#: Longest entry name extracted, in UTF-8 bytes: object stores cap keys at 1,024, file systems at 4,096.
NAME_MAX = 1024
#: The general purpose flag bit zipfile reads as "encrypted, password required".
ENCRYPTED_FLAG = 0x1
#: A task folder's staging and swapped-out siblings: ``.<folder>.ccp-staging-<random>`` and ``.ccp-old-``.
STAGING_KINDS = ("staging", "old")


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


# Airflow run ids hold ":" and "+" (manual__2025-01-01T00:00:00+00:00): kept as they are, like letters.
_SEGMENT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+=@,~:")


def path_segment(value: Any) -> str:
    """One folder name for any Airflow id, never ``.``, ``..``, empty, hidden or more than one level.

    Percent-encodes every byte outside a safe set (``/``, ``\\``, NUL, ``%`` ...) and a leading dot, so
    distinct ids get distinct names and none starts with the dot the staging folders use; the empty
    id becomes ``%``, which no encoding produces; a very long one is cut and suffixed by its hash.
    """
    text = str(value)
    if not text:
        return "%"
    encoded = "".join(
        chr(byte) if chr(byte) in _SEGMENT_SAFE else f"%{byte:02X}" for byte in text.encode("utf-8", "surrogatepass")
    )
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > SEGMENT_MAX:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
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


@dataclass(frozen=True)
class ExtractionLimits:
    """How much an ``output.zip`` may expand to; None lifts a limit. The operator's arguments set them."""

    max_bytes: int | None = 20 * 1024**3
    max_entries: int | None = 100_000
    max_ratio: float | None = 200.0

    def check(self, archive: Path, infos: list[zipfile.ZipInfo]) -> None:
        """Raise before anything is written; zipfile never yields more than a member's declared size."""
        total = sum(info.file_size for info in infos)
        packed = sum(info.compress_size for info in infos)
        if self.max_entries is not None and len(infos) > self.max_entries:
            self._fail(archive, f"has {len(infos)} entries", "max_extract_entries", self.max_entries)
        if self.max_bytes is not None and total > self.max_bytes:
            self._fail(archive, f"expands to {total} bytes", "max_extract_bytes", self.max_bytes)
        if self.max_ratio is not None and total > RATIO_CHECK_FLOOR and total > self.max_ratio * max(packed, 1):
            ratio = total / max(packed, 1)
            self._fail(
                archive,
                f"expands {ratio:.0f} times ({packed} to {total} bytes)",
                "max_compression_ratio",
                self.max_ratio,
            )

    @staticmethod
    def _fail(archive: Path, what: str, argument: str, limit: float) -> None:
        raise CCPOutputLimitError(
            f"The outputs archive {archive.name} {what}, over the limit {argument}={limit:g}: nothing was "
            f"extracted. If the outputs are expected, raise the operator's {argument} (None lifts it) "
            "or set extract=False to keep only the archive"
        )


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an archive entry must not be extracted, or None when it stays inside the folder."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if "\x00" in info.orig_filename:  # zipfile cuts ``filename`` at the NUL: "a\0b.txt" would become "a"
        return "has a NUL byte in its name"
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        return f"has a name longer than {NAME_MAX} bytes"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "climbs out of the folder with '..'"
    if not parts:
        return "has no name once '.' and empty parts are dropped"
    return None


def unreadable_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry cannot be read at all (the whole archive is refused), or None."""
    if info.flag_bits & ENCRYPTED_FLAG:
        return "is encrypted (a password-protected zip)"
    depth = len(PurePosixPath(info.filename.replace("\\", "/")).parts) - (0 if _is_dir(info) else 1)
    if depth > MAX_ENTRY_DEPTH:
        return f"lies {depth} folders deep, more than the {MAX_ENTRY_DEPTH} extracted"
    return None


def check_readable(archive: Path, infos: Iterable[zipfile.ZipInfo]) -> None:
    """Raise ``CCPDownloadError`` naming the first entry the provider cannot read, before anything is written."""
    for info in infos:
        reason = unreadable_reason(info)
        if reason is not None:
            raise CCPDownloadError(
                f"The outputs archive {archive.name} cannot be extracted: its entry {info.filename[:100]!r} "
                f"{reason}; nothing was extracted (extract=False keeps the archive as it is)"
            )


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


def carries_inputs(name: str) -> bool:
    """Whether an entry is one of the files CCP writes the execution's input values into."""
    return PurePosixPath(name.replace("\\", "/")).name in INPUT_FILES


def _copy_stream(source: Any, target: ObjectStoragePath, *, private: bool = False) -> None:
    if private and _is_local(target):
        # Owner-only from the first byte: chmod after writing would leave a window.
        fd = os.open(target.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, COPY_CHUNK)
        return
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, COPY_CHUNK)


def extract_archive(
    archive: Path,
    target: ObjectStoragePath,
    *,
    limits: ExtractionLimits | None = None,
    published: ObjectStoragePath | None = None,
    withhold_inputs: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write every safe entry of ``archive`` under ``target``; return (files, refused entries).

    The archive must stay within ``limits`` (checked before anything is written). Files are listed
    with their URI under ``published`` (default ``target``), where ``store_outputs`` moves them.
    ``ccp-entrypoint.sh`` and ``ccpenv`` are written owner-only, or skipped when ``withhold_inputs``.
    """
    files: list[dict[str, Any]] = []
    refused: list[str] = []
    extracted = _Extracted()
    published = target if published is None else published
    with _open_zip(archive) as zf:
        infos = zf.infolist()
        (limits or ExtractionLimits()).check(archive, infos)
        check_readable(archive, infos)
        for info in infos:
            if withhold_inputs and carries_inputs(info.filename):
                continue
            relative, is_dir = PurePosixPath(info.filename.replace("\\", "/")), _is_dir(info)
            reason = unsafe_reason(info) or extracted.clash(relative, is_dir)
            if reason is None:
                reason = _write_entry(zf, info, target.joinpath(*relative.parts))
            if reason is not None:
                log.warning("Not extracting %r from %s: it %s", info.filename, archive.name, reason)
                refused.append(info.filename)
                continue
            extracted.add(relative, is_dir)
            if not is_dir:
                uri = str(published.joinpath(*relative.parts))
                files.append({"path": relative.as_posix(), "uri": uri, "size": info.file_size})
    return files, refused


def _write_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: ObjectStoragePath) -> str | None:
    """Write one entry; a storage error refuses that entry only (the reason is returned), not the task."""
    try:
        if _is_dir(info):
            destination.mkdir(parents=True, exist_ok=True)
            return None
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as source:
            _copy_stream(source, destination, private=carries_inputs(info.filename))
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
            check_readable(archive, [info])
            if info.file_size > TAIL_READ_LIMIT:
                log.info(
                    "Not reading the tail of %s: %d bytes is more than the tail reader reads",
                    info.filename,
                    info.file_size,
                )
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


def _sibling(target: ObjectStoragePath, kind: str) -> ObjectStoragePath:
    """A fresh folder name beside ``target`` that only this task's folder can own (ids never start with '.')."""
    return target.parent / f".{target.name}.ccp-{kind}-{secrets.token_hex(4)}"


def _remove(path: ObjectStoragePath) -> None:
    """Best effort: cleaning up must never hide the error that made it necessary."""
    if _is_local(path):
        _discard(Path(path.path))
        return
    with suppress(OSError):
        if path.exists():
            path.fs.rm(path.path, recursive=True)


def _clear_leftovers(target: ObjectStoragePath) -> None:
    """Staging folders a killed try left beside the task's folder; nothing else is touched."""
    parent = target.parent
    if not parent.exists():
        return
    # Exactly the names _sibling makes: a prefix would also match the staging folder of a task
    # whose id starts with this one's followed by ".ccp-".
    own = re.compile(rf"\.{re.escape(target.name)}\.ccp-(?:{'|'.join(STAGING_KINDS)})-[0-9a-f]{{8}}")
    for entry in parent.iterdir():
        if own.fullmatch(entry.name):
            _remove(entry)


def _swap(staging: ObjectStoragePath, target: ObjectStoragePath) -> None:
    """Put the complete ``staging`` folder where ``target`` is; the old outputs go only once it is there."""
    if not _is_local(target):
        # Object stores have no folders to rename (s3fs cannot move a prefix whose "folder" key was never
        # written): the old files go once the new ones are all written, then each file moves on its own.
        _remove(target)
        prefix = staging.path.rstrip("/") + "/"
        for source in target.fs.find(staging.path):
            target.fs.mv(source, target.path.rstrip("/") + "/" + source.removeprefix(prefix))
        _remove(staging)
        return
    live, new = Path(target.path), Path(staging.path)
    previous = Path(_sibling(target, "old").path)
    had_outputs = os.path.lexists(live)  # a dangling link is still in the way
    if had_outputs:
        os.rename(live, previous)
    try:
        os.rename(new, live)
    except OSError:
        if had_outputs:
            os.rename(previous, live)
        raise
    if had_outputs:
        _discard(previous)


def _discard(path: Path) -> None:
    """Remove what was at a target: a link or a file as itself (never what it points to), a folder whole."""
    with suppress(OSError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)


@contextmanager
def _download_folder(staging: ObjectStoragePath) -> Iterator[Path]:
    """A local folder for the download: the staging folder itself when local, else a temporary one."""
    if _is_local(staging):
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
    ``output/``), replacing an earlier try's only once everything is downloaded and extracted.

    ``secret_inputs`` (a secret input was sent): ``ccp-entrypoint.sh`` and ``ccpenv`` are not
    extracted and a local ``output.zip``, which still holds them, is made owner-only.
    """
    fetch = functools.partial(hook.download_outputs, job_id)
    return _store(fetch, target, extract, log_lines, limits, secret_inputs)


def store_results(results: SyncResults, target: ObjectStoragePath, *, secret_inputs: bool = False) -> StoredOutputs:
    """Put the results a server answered a sync execution with into ``target``, as ``store_outputs`` would
    put a job's ``results.json`` (and its ``manifest.json``)."""
    return _store(functools.partial(_write_results, results), target, False, 0, None, secret_inputs)


def _write_results(results: SyncResults, folder: Path) -> DownloadedOutputs:
    from airflow_provider_ccp.hooks.ccp import DownloadedOutputs

    path = folder / results.file_name
    path.write_bytes(results.body)
    return DownloadedOutputs(
        path=path, size=len(results.body), url="the answer to the execution request", kind=OutputsKind.JSON
    )


@contextmanager
def _staged(target: ObjectStoragePath) -> Iterator[ObjectStoragePath]:
    """A fresh staging folder's name beside ``target``, swapped in when the block ends well, else removed."""
    _clear_leftovers(target)
    staging = _sibling(target, "staging")
    try:
        yield staging
        _swap(staging, target)
    except BaseException:
        _remove(staging)
        raise


def extract_replacing(
    archive: Path, target: ObjectStoragePath, *, limits: ExtractionLimits | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """``extract_archive`` into a new folder that then replaces ``target`` as a whole: nothing is written
    through a link (or into a folder) already at ``target``, and a failure leaves ``target`` as it was."""
    with _staged(target) as staging:
        staging.mkdir(parents=True)
        return extract_archive(archive, staging, limits=limits, published=target)


def _store(
    fetch: Callable[[Path], DownloadedOutputs],
    target: ObjectStoragePath,
    extract: bool,
    log_lines: int,
    limits: ExtractionLimits | None,
    secret_inputs: bool,
) -> StoredOutputs:
    with _staged(target) as staging, _download_folder(staging) as folder:
        downloaded = fetch(folder)
        log.info("Downloaded %s (%d bytes) from %s", downloaded.path.name, downloaded.size, downloaded.url)
        stored = _stage(
            downloaded.path, downloaded.kind == OutputsKind.ZIP, staging, target, extract, limits, secret_inputs
        )
        stored.tails = read_tails(downloaded.path, log_lines) if downloaded.kind == OutputsKind.ZIP else {}
    return stored


def _stage(
    download: Path,
    is_zip: bool,
    staging: ObjectStoragePath,
    target: ObjectStoragePath,
    extract: bool,
    limits: ExtractionLimits | None,
    secret_inputs: bool,
) -> StoredOutputs:
    """Fill ``staging`` (archive, extracted files, manifest.json), every URI naming its place under ``target``."""
    archive = staging / download.name
    if not _is_local(staging):
        with download.open("rb") as source:
            _copy_stream(source, archive)
    elif secret_inputs:
        os.chmod(download, 0o600)
    stored = StoredOutputs(archive=str(target / download.name), manifest=str(target / MANIFEST_NAME))
    if is_zip and extract:
        stored.files, stored.refused = extract_archive(
            download,
            staging / EXTRACT_DIR,
            limits=limits,
            published=target / EXTRACT_DIR,
            withhold_inputs=secret_inputs,
        )
    elif is_zip:
        stored.files = list_archive(download)
    if is_zip and secret_inputs:
        with _open_zip(download) as zf:
            stored.withheld = [name for name in zf.namelist() if carries_inputs(name)]
    with (staging / MANIFEST_NAME).open("w") as out:
        json.dump(stored.listing(), out, indent=1)
    return stored


def fetch_tails(hook: CCPHook, job_id: str, lines: int) -> dict[str, list[str]]:
    """The stdout/stderr tails of a job, from a throw-away download of its outputs."""
    with tempfile.TemporaryDirectory(prefix="ccp-logs-") as folder:
        downloaded = hook.download_outputs(job_id, folder)
        return read_tails(downloaded.path, lines) if downloaded.kind == OutputsKind.ZIP else {}


def log_tails(tails: dict[str, list[str]], logger: logging.Logger | Any, *, level: int = logging.INFO) -> None:
    """Copy the tails into the task log, one block per non-empty file."""
    for name, lines in tails.items():
        if not lines:
            continue
        logger.log(level, "----- last %d line(s) of %s -----\n%s", len(lines), name, "\n".join(lines))
