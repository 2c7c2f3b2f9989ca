"""What is inside an ``output.zip`` and which of it may be written: the entry checks, the size limits, extraction
through ``ObjectStoragePath``, listing, and the tails of CCP's stdout/stderr files.

An entry must stay inside the output folder (no absolute path, no ``..``, no link, no clash with an earlier entry) and
the archive within ``ExtractionLimits``; an archive the provider cannot read is refused whole, before anything is
written. ``airflow_provider_ccp.outputs`` decides where the extracted files go and swaps them in.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp.exceptions import CCPDownloadError, CCPOutputLimitError

__all__ = ["ExtractionLimits", "extract_archive", "list_archive", "read_tails", "unsafe_reason", "carries_inputs"]

log = logging.getLogger(__name__)

#: CCP's captured streams: ``stdout.<n>.txt`` in ``output.zip``, ``outputs_stdout.<n>.txt`` in archives.
STD_STREAM = re.compile(r"(?:^|/)(?:outputs_)?(?:stdout|stderr)[^/]*\.txt$")
#: Files CCP writes with the execution's input values in them (the rendered script, the environment).
INPUT_FILES = frozenset({"ccp-entrypoint.sh", "ccpenv"})
#: What zipfile raises when a member's data is damaged or unreadable (bad CRC, broken deflate stream,
#: truncated member, unknown compression, a password needed: RuntimeError); none of them is an OSError.
#: RecursionError (a RuntimeError too) is the folder creation of a path deeper than ``MAX_ENTRY_DEPTH``
#: would let through, should a storage overflow sooner than the local disk does.
ARCHIVE_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
#: A std stream larger than this is not read for its tail: decompressing it all would cost minutes.
TAIL_READ_LIMIT = 64 * 1024 * 1024
#: Below this many extracted bytes the compression ratio is not checked: small text compresses well.
RATIO_CHECK_FLOOR = 64 * 1024 * 1024
#: Folders an entry may lie under: deeper than any real output, far below the ~1,000 levels at which
#: creating the folders overflows Python's stack (RecursionError), and under PATH_MAX for short names.
MAX_ENTRY_DEPTH = 200
#: Longest entry name extracted, in UTF-8 bytes: object stores cap keys at 1,024, file systems at 4,096.
NAME_MAX = 1024


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
        ratio = total / max(packed, 1) if total > RATIO_CHECK_FLOOR else 0.0
        for argument, limit, value, what in (
            ("max_extract_entries", self.max_entries, len(infos), f"has {len(infos)} entries"),
            ("max_extract_bytes", self.max_bytes, total, f"expands to {total} bytes"),
            ("max_compression_ratio", self.max_ratio, ratio, f"expands {ratio:.0f} times ({packed} to {total} bytes)"),
        ):
            if limit is not None and value > limit:
                raise CCPOutputLimitError(
                    f"The outputs archive {archive.name} {what}, over the limit {argument}={limit:g}: nothing was "
                    f"extracted. If the outputs are expected, raise the operator's {argument} (None lifts it) "
                    "or set extract=False to keep only the archive"
                )


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an archive entry must not be extracted, or None when it stays inside the folder."""
    name = info.filename.replace("\\", "/")
    if stat.S_ISLNK(info.external_attr >> 16):
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


def check_readable(archive: Path, infos: Iterable[zipfile.ZipInfo]) -> None:
    """Raise ``CCPDownloadError`` naming the first entry the provider cannot read, before anything is written."""
    for info in infos:
        depth = len(PurePosixPath(info.filename.replace("\\", "/")).parts) - (0 if _is_dir(info) else 1)
        reason = None
        if info.flag_bits & 0x1:  # the general purpose flag bit zipfile reads as "password required"
            reason = "is encrypted (a password-protected zip)"
        elif depth > MAX_ENTRY_DEPTH:
            reason = f"lies {depth} folders deep, more than the {MAX_ENTRY_DEPTH} extracted"
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


def carries_inputs(name: str) -> bool:
    """Whether an entry is one of the files CCP writes the execution's input values into."""
    return PurePosixPath(name.replace("\\", "/")).name in INPUT_FILES


def copy_stream(source: Any, target: ObjectStoragePath, *, private: bool = False) -> None:
    """Copy ``source`` to ``target`` in chunks; ``private`` makes a local file owner-only (object stores
    have no modes)."""
    if private and is_local(target):
        # Owner-only from the first byte: chmod after writing would leave a window.
        fd = os.open(target.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        out = os.fdopen(fd, "wb")
    else:
        out = target.open("wb")
    with out:
        shutil.copyfileobj(source, out, 1024 * 1024)


def extract_archive(
    archive: Path,
    target: ObjectStoragePath,
    *,
    limits: ExtractionLimits | None = None,
    published: ObjectStoragePath | None = None,
    withhold_inputs: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Write every safe entry of an archive within ``limits`` under ``target``; return (files, refused
    entries). Files are listed with their URI under ``published`` (default ``target``), where they are moved
    to. ``ccp-entrypoint.sh`` and ``ccpenv`` are written owner-only, or skipped when ``withhold_inputs``."""
    files: list[dict[str, Any]] = []
    refused: list[str] = []
    extracted = _Extracted()
    published = target if published is None else published
    with open_zip(archive) as zf:
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
            copy_stream(source, destination, private=carries_inputs(info.filename))
    except OSError as err:
        with suppress(OSError):  # no half-written file left beside the listed ones
            destination.unlink(missing_ok=True)
        return f"could not be written: {err}"
    return None


def list_archive(archive: Path) -> list[dict[str, Any]]:
    """The archive's files without extracting them (``uri`` is None: they only exist inside the zip)."""
    with open_zip(archive) as zf:
        return [
            {"path": info.filename, "uri": None, "size": info.file_size} for info in zf.infolist() if not _is_dir(info)
        ]


def read_tails(archive: Path, lines: int) -> dict[str, list[str]]:
    """The last ``lines`` lines of each stdout/stderr file inside ``archive``, read as a stream."""
    if lines <= 0:
        return {}
    tails: dict[str, list[str]] = {}
    with open_zip(archive) as zf:
        for info in zf.infolist():
            if _is_dir(info) or not STD_STREAM.search(info.filename) or unsafe_reason(info):
                continue
            check_readable(archive, [info])
            if info.file_size > TAIL_READ_LIMIT:
                log.info("Not reading the tail of %s: %d bytes is more than it reads", info.filename, info.file_size)
                continue
            with zf.open(info) as member:
                last = deque(member, maxlen=lines)
            tails[info.filename] = [raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in last]
    return tails


@contextmanager
def open_zip(archive: Path) -> Iterator[zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise CCPDownloadError(f"The outputs archive {archive.name} is not a valid zip file: {err}") from None
    with zf:
        try:
            yield zf
        except ARCHIVE_READ_ERRORS as err:
            raise CCPDownloadError(f"The outputs archive {archive.name} could not be read: {err}") from err


def is_local(path: ObjectStoragePath) -> bool:
    """Whether ``path`` is on this machine's file system, where files have modes and folders can be renamed."""
    return path.protocol in ("file", "local")
