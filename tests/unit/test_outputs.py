"""Safe extraction of output.zip, output locations and stdout/stderr tails (no network)."""

from __future__ import annotations

import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import fs as airflow_fs
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_ccp import outputs
from airflow_provider_ccp.exceptions import CCPDownloadError
from airflow_provider_ccp.outputs import extract_archive, read_tails, storage_path, task_output_path, unsafe_reason


def make_zip(
    path: Path, entries: dict[str, bytes] | list[tuple[str, bytes]], links: dict[str, str] | None = None
) -> Path:
    """A zip of ``entries`` in order (a list may repeat a name) and of symbolic ``links``."""
    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted here
        for name, data in entries.items() if isinstance(entries, dict) else entries:
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../escape.txt", "a/../../escape.txt", "..\\escape.txt", "C:\\evil.txt", "C:/evil.txt"],
)
def test_entries_that_escape_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "o.zip", {"ok/inside.txt": b"fine", name: b"evil"})
    target = tmp_path / "deep" / "out"

    files, refused = extract_archive(archive, storage_path(str(target)))

    assert refused == [name]
    assert [item["path"] for item in files] == ["ok/inside.txt"]
    assert (target / "ok" / "inside.txt").read_bytes() == b"fine"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["inside.txt", "o.zip"]


def test_symbolic_links_are_refused(tmp_path):
    archive = make_zip(tmp_path / "o.zip", {"a.txt": b"x"}, links={"link": "/etc/passwd"})

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == ["link"]
    assert not (tmp_path / "out" / "link").exists()
    assert not (tmp_path / "out" / "link").is_symlink()
    assert [item["path"] for item in files] == ["a.txt"]


def with_an_empty_name(archive: Path) -> Path:
    """Rename the archive's first entry, whose name is one character long, to "" (zipfile cannot write that)."""
    raw = archive.read_bytes()
    central, end = raw.index(b"PK\x01\x02"), raw.index(b"PK\x05\x06")
    local_header, directory, tail = bytearray(raw[:central]), bytearray(raw[central:end]), bytearray(raw[end:])
    struct.pack_into("<H", local_header, 26, 0)
    del local_header[30]
    struct.pack_into("<H", directory, 28, 0)
    del directory[46]
    for offset in range(len(directory) - 46):  # the later entries' local headers moved one byte back
        if directory[offset : offset + 4] == b"PK\x01\x02" and offset:
            struct.pack_into("<I", directory, offset + 42, struct.unpack_from("<I", directory, offset + 42)[0] - 1)
    struct.pack_into("<II", tail, 12, len(directory), len(local_header))
    archive.write_bytes(bytes(local_header + directory + tail))
    return archive


@pytest.mark.parametrize("name", [".", "./", "././/", ""])
def test_entries_without_a_name_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "o.zip", [(name or "Z", b"nameless"), ("a.txt", b"x")])
    if not name:
        with_an_empty_name(archive)

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == [name]
    assert files == [{"path": "a.txt", "uri": f"file://{tmp_path}/out/a.txt", "size": 1}]
    assert read_tails(archive, 5) == {}  # no crash either where the archive is only read
    assert {"path": "a.txt", "uri": None, "size": 1} in outputs.list_archive(archive)


@pytest.mark.parametrize("second", ["a.txt", "./a.txt", "a.txt/"])
def test_a_repeated_name_keeps_the_first_entry(tmp_path, second):
    archive = make_zip(tmp_path / "o.zip", [("a.txt", b"first"), (second, b"second, longer")])

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == [second]
    assert files == [{"path": "a.txt", "uri": f"file://{tmp_path}/out/a.txt", "size": 5}]
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"first"


@pytest.mark.parametrize(
    ("entries", "kept", "clashing"),
    [
        ([("x", b"file"), ("x/y", b"under a file")], "x", "x/y"),
        ([("x/y", b"in a folder"), ("x", b"file over the folder")], "x/y", "x"),
        ([("x/", b""), ("x", b"file over the folder")], None, "x"),
    ],
)
def test_file_and_folder_clashes_are_refused(tmp_path, entries, kept, clashing):
    archive = make_zip(tmp_path / "o.zip", entries)

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == [clashing]
    assert [item["path"] for item in files] == ([kept] if kept else [])


def test_an_entry_that_cannot_be_written_is_refused(tmp_path):
    too_long = "n" * 300 + ".txt"  # longer than any file system allows for one name
    archive = make_zip(tmp_path / "o.zip", [(too_long, b"x"), ("a.txt", b"fine")])

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == [too_long]
    assert [item["path"] for item in files] == ["a.txt"]


def damaged_zip(path: Path, compression: int) -> Path:
    """A zip whose directory is fine but whose stdout member's data is not."""
    data = bytes(range(256)) * 64
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        zf.writestr("stdout.1.txt", data)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 3
    raw[middle : middle + 16] = bytes(16)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_damaged_member_is_a_download_error(tmp_path, compression):
    archive = damaged_zip(tmp_path / "o.zip", compression)

    with pytest.raises(CCPDownloadError, match="could not be read"):
        extract_archive(archive, storage_path(str(tmp_path / "out")))
    with pytest.raises(CCPDownloadError, match="could not be read"):
        read_tails(archive, 5)


def test_safe_names_are_accepted():
    assert unsafe_reason(zipfile.ZipInfo("a/b/c..d.txt")) is None
    assert unsafe_reason(zipfile.ZipInfo("dir/")) is None


def test_not_a_zip_is_a_download_error(tmp_path):
    bad = tmp_path / "output.zip"
    bad.write_bytes(b"<html>proxy error</html>")

    with pytest.raises(CCPDownloadError, match="not a valid zip"):
        extract_archive(bad, storage_path(str(tmp_path / "out")))


def test_tails_are_the_last_lines_of_each_std_stream(tmp_path):
    stdout = "\n".join(f"line {n}" for n in range(100)).encode()
    archive = make_zip(
        tmp_path / "o.zip",
        {"stdout.1.txt": stdout, "sub/stderr.2.txt": b"oops\n", "result.json": b"{}", "outputs_stdout.3.txt": b"x"},
    )

    tails = read_tails(archive, 3)

    assert tails == {
        "stdout.1.txt": ["line 97", "line 98", "line 99"],
        "sub/stderr.2.txt": ["oops"],
        "outputs_stdout.3.txt": ["x"],
    }
    assert read_tails(archive, 0) == {}


def test_plain_paths_become_file_uris_and_uris_stay(tmp_path):
    assert str(storage_path(str(tmp_path))) == f"file://{tmp_path}"
    assert str(storage_path("file:///data/x")) == "file:///data/x"


def test_task_folder_layout(tmp_path):
    path = task_output_path(str(tmp_path), "dag", "manual__2025/01", "task", 3)

    assert str(path) == f"file://{tmp_path}/dag/manual__2025_01/task/3"
    assert str(task_output_path(str(tmp_path), "dag", "r", "task", -1)) == f"file://{tmp_path}/dag/r/task"


def test_default_root_is_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))

    assert outputs.default_output_root() == str(tmp_path / "ccp-outputs")
    assert str(task_output_path(None, "d", "r", "t", None)) == f"file://{tmp_path}/ccp-outputs/d/r/t"


@pytest.fixture
def memory_storage(monkeypatch: pytest.MonkeyPatch) -> MemoryFileSystem:
    """An object store (fsspec's memory filesystem) reachable as memory:// through ObjectStoragePath."""
    memory = MemoryFileSystem()
    monkeypatch.setitem(airflow_fs._BUILTIN_SCHEME_TO_FS, "memory", lambda *_: memory)
    airflow_fs._register_filesystems.cache_clear()
    yield memory
    airflow_fs._register_filesystems.cache_clear()
    memory.store.clear()


@pytest.mark.usefixtures("sandbox_conn")
def test_outputs_go_to_object_storage(memory_storage, sandbox, tmp_path):
    from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
    from airflow_provider_ccp.waiting import job_event
    from tests.task_helpers import finished_job, make_context

    job = finished_job("word-count", {"text": "to the bucket", "mode": "words"})
    op = CCPExecuteMethodOperator(task_id="count", method_id="word-count", output_path="memory://bucket/runs")

    manifest = op.execute_complete(make_context(), event=job_event("success", job.job_id, "successful", ""))

    archive = ObjectStoragePath(manifest["archive"])
    assert archive.protocol == "memory"
    assert archive.path.lstrip("/").startswith("bucket/runs/ccp_tests/")
    assert zipfile.is_zipfile(memory_storage.open(archive.path))
    result = next(item for item in manifest["files"] if item["path"] == "result.json")
    assert memory_storage.cat(ObjectStoragePath(result["uri"]).path) == b'{"words": 3, "mode": "words"}\n'
    assert not list((tmp_path).rglob("*.zip"))  # nothing left behind locally
