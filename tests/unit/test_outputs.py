"""Where outputs land, and how a try's outputs replace an earlier one's whole, or not at all (no network)."""

from __future__ import annotations

import json
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp import outputs
from airflow_provider_ccp.archives import ExtractionLimits
from airflow_provider_ccp.exceptions import CCPDownloadError, CCPOutputLimitError
from airflow_provider_ccp.outputs import (
    path_segment,
    storage_path,
    store_outputs,
    task_output_path,
)
from tests.unit.zips import damaged_zip, make_zip, patched_zip


def test_plain_paths_become_file_uris_and_uris_stay(tmp_path):
    assert str(storage_path(str(tmp_path))) == f"file://{tmp_path}"
    assert str(storage_path("file:///data/x")) == "file:///data/x"


def test_task_folder_layout(tmp_path):
    path = task_output_path(str(tmp_path), "dag", "manual__2025/01", "task", 3)

    assert str(path) == f"file://{tmp_path}/dag/manual__2025%2F01/task/3"
    assert str(task_output_path(str(tmp_path), "dag", "r", "task", -1)) == f"file://{tmp_path}/dag/r/task"


def test_default_root_is_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))

    assert outputs.default_output_root() == str(tmp_path / "ccp-outputs")
    assert str(task_output_path(None, "d", "r", "t", None)) == f"file://{tmp_path}/ccp-outputs/d/r/t"


# --------------------------------------------------------------------------- hostile ids, limits, atomic delivery

HOSTILE_IDS = [".", "..", "", "/", "\\", "a/../../b", "..\\..", "x\x00y", "%2E%2E", "n" * 1000, ".hidden", "é/ü"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("position", ["dag_id", "run_id", "task_id"])
def test_no_id_leaves_its_own_folder_level(tmp_path, hostile, position):
    ids = {"dag_id": "pipeline", "run_id": "run", "task_id": "ingest"} | {position: hostile}
    root = tmp_path / "root"

    path = Path(task_output_path(str(root), ids["dag_id"], ids["run_id"], ids["task_id"], 2).path)

    assert path.relative_to(root).parts[:3] == tuple(path_segment(ids[key]) for key in ("dag_id", "run_id", "task_id"))
    assert len(path.relative_to(root).parts) == 4
    for segment in path.relative_to(root).parts:
        assert segment not in (".", "..", "")
        assert not segment.startswith(".")
        assert "/" not in segment
        assert "\\" not in segment
        assert "\x00" not in segment
        assert len(segment.encode()) <= 255
    path.mkdir(parents=True)  # a name the file system takes
    assert path.resolve().is_relative_to(root.resolve())


def test_distinct_ids_get_distinct_folders():
    values = ["a/b", "a_b", "a%2Fb", "", "%", ".", "..", "%2E", "n" * 1000, "n" * 999 + "m"]

    assert len({path_segment(value) for value in values}) == len(values)


def test_a_run_called_dotdot_cannot_reset_another_dags_outputs(tmp_path, stub_hook):
    root = tmp_path / "root"
    other = root / "ingest" / "r" / "t"
    other.mkdir(parents=True)
    (other / "precious.txt").write_text("another DAG's output")
    stub_hook.serve(make_zip(tmp_path / "o.zip", {"a.txt": b"new"}))

    for _ in range(2):  # the second try resets what the first wrote
        target = task_output_path(str(root), "pipeline", "..", "ingest", None)
        store_outputs(stub_hook, "job", target, extract=True, log_lines=0)

    assert (other / "precious.txt").read_text() == "another DAG's output"
    assert (Path(target.path) / "output" / "a.txt").read_bytes() == b"new"
    assert Path(target.path).is_relative_to(root / "pipeline")


class StubHook:
    """Serves a fixed file as the job's outputs, as ``CCPHook.download_outputs`` would write it."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.error: Exception | None = None

    def serve(self, archive: Path | bytes) -> None:
        self.body, self.error = archive if isinstance(archive, bytes) else archive.read_bytes(), None

    def fail(self, error: Exception) -> None:
        self.error = error

    def download_outputs(self, job_id, destination):  # type: ignore[no-untyped-def]
        from airflow_provider_ccp.hooks.ccp import DownloadedOutputs

        if self.error is not None:
            raise self.error
        assert self.body is not None
        path = Path(destination) / "output.zip"
        path.write_bytes(self.body)
        return DownloadedOutputs(path=path, size=len(self.body), url="http://127.0.0.1/x", kind="zip")


@pytest.fixture
def stub_hook() -> StubHook:
    return StubHook()


def zeros_zip(path: Path, size: int, name: str = "zeros.bin") -> Path:
    """A small archive of ``size`` zero bytes: the shape of a zip bomb."""
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open(name, "w", force_zip64=True) as out,
    ):
        chunk = bytes(1024 * 1024)
        for start in range(0, size, len(chunk)):
            out.write(chunk[: min(len(chunk), size - start)])
    return path


def many_entries_zip(path: Path, count: int) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for n in range(count):
            zf.writestr(f"f/{n}.txt", b"")
    return path


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    ("limits", "archive", "argument"),
    [
        (ExtractionLimits(max_bytes=10 * 1024 * 1024), lambda p: zeros_zip(p, 20 * 1024 * 1024), "max_extract_bytes"),
        (ExtractionLimits(max_entries=50), lambda p: many_entries_zip(p, 51), "max_extract_entries"),
        (ExtractionLimits(), lambda p: zeros_zip(p, 300 * 1024 * 1024), "max_compression_ratio"),
    ],
    ids=["bytes", "entries", "ratio"],
)
def test_an_archive_over_a_limit_is_refused_whole_and_old_outputs_stay(tmp_path, stub_hook, limits, archive, argument):
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)
    stub_hook.serve(make_zip(tmp_path / "good.zip", {"good.txt": b"old and complete"}))
    store_outputs(stub_hook, "job-1", target, extract=True, log_lines=0)
    before = tree(tmp_path / "root")
    stub_hook.serve(archive(tmp_path / "big.zip"))

    with pytest.raises(CCPOutputLimitError) as raised:
        store_outputs(stub_hook, "job-2", target, extract=True, log_lines=0, limits=limits)

    message = str(raised.value)
    assert f"{argument}=" in message
    assert f"raise the operator's {argument}" in message
    assert tree(tmp_path / "root") == before  # nothing half-extracted, no staging folder left


def test_default_limits_let_a_large_incompressible_output_through(tmp_path, stub_hook):
    payload = bytes(range(256)) * 4096 * 80  # 80 MiB that deflate cannot shrink much
    with zipfile.ZipFile(tmp_path / "big.zip", "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("data.bin", payload)
    stub_hook.serve(tmp_path / "big.zip")
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)

    stored = store_outputs(stub_hook, "job", target, extract=True, log_lines=0)

    assert [item["size"] for item in stored.files] == [len(payload)]


def test_xcom_lists_the_first_files_and_manifest_json_lists_them_all(tmp_path, stub_hook):
    stub_hook.serve(many_entries_zip(tmp_path / "many.zip", 2500))
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)

    stored = store_outputs(stub_hook, "job", target, extract=False, log_lines=0)

    xcom = stored.for_xcom()
    assert xcom["file_count"] == 2500
    assert len(xcom["files"]) == outputs.XCOM_LIST_LIMIT
    assert len(json.dumps(xcom)) < 20_000
    manifest = json.loads(ObjectStoragePath(xcom["manifest"]).read_text())
    assert len(manifest["files"]) == 2500
    assert manifest["files"][:3] == xcom["files"][:3]


@pytest.mark.parametrize(
    "failure",
    [
        "download_error",
        "not_a_zip",
        "bad_crc",
    ],
)
def test_a_failed_rerun_keeps_the_previous_complete_outputs(tmp_path, stub_hook, failure):
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)
    stub_hook.serve(make_zip(tmp_path / "good.zip", {"good.txt": b"old and complete"}))
    store_outputs(stub_hook, "job-1", target, extract=True, log_lines=0)
    before = {
        name: (tmp_path / "root" / name).read_bytes()
        for name in tree(tmp_path / "root")
        if (tmp_path / "root" / name).is_file()
    }
    if failure == "download_error":
        stub_hook.fail(CCPDownloadError("The download of output.zip broke after 10 bytes"))
    elif failure == "not_a_zip":
        stub_hook.serve(b"<html>502 Bad Gateway</html>")
    else:
        stub_hook.serve(damaged_zip(tmp_path / "bad.zip", zipfile.ZIP_DEFLATED))

    with pytest.raises(CCPDownloadError):
        store_outputs(stub_hook, "job-2", target, extract=True, log_lines=0)

    after = {
        name: (tmp_path / "root" / name).read_bytes()
        for name in tree(tmp_path / "root")
        if (tmp_path / "root" / name).is_file()
    }
    assert after == before


def test_a_successful_rerun_replaces_the_outputs_whole(tmp_path, stub_hook):
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)
    stub_hook.serve(make_zip(tmp_path / "one.zip", {"first.txt": b"1"}))
    store_outputs(stub_hook, "job-1", target, extract=True, log_lines=0)
    stub_hook.serve(make_zip(tmp_path / "two.zip", {"second.txt": b"2"}))

    store_outputs(stub_hook, "job-2", target, extract=True, log_lines=0)

    assert tree(Path(target.path)) == ["manifest.json", "output", "output.zip", "output/second.txt"]
    assert tree(Path(target.path).parent) == ["t", *[f"t/{name}" for name in tree(Path(target.path))]]


def test_leftovers_of_a_killed_try_are_cleared_but_nothing_else(tmp_path, stub_hook):
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)
    run = Path(target.path).parent
    (run / ".t.ccp-staging-0123abcd").mkdir(parents=True)
    (run / ".t.ccp-staging-0123abcd" / "half.bin").write_bytes(b"x")
    (run / "t2").mkdir()
    # another task's staging folder, whose id starts with this task's id and ".ccp-"
    (run / ".t.ccp-staging-x.ccp-staging-0123abcd").mkdir()
    stub_hook.serve(make_zip(tmp_path / "o.zip", {"a.txt": b"a"}))

    store_outputs(stub_hook, "job", target, extract=True, log_lines=0)

    assert sorted(p.name for p in run.iterdir()) == [".t.ccp-staging-x.ccp-staging-0123abcd", "t", "t2"]


def test_outputs_swap_on_object_storage_too(memory_storage, stub_hook, tmp_path):
    target = task_output_path("memory://bucket/runs", "d", "r", "t", None)
    stub_hook.serve(make_zip(tmp_path / "one.zip", {"first.txt": b"1"}))
    store_outputs(stub_hook, "job-1", target, extract=True, log_lines=0)
    stub_hook.serve(b"not a zip")

    with pytest.raises(CCPDownloadError):
        store_outputs(stub_hook, "job-2", target, extract=True, log_lines=0)
    assert memory_storage.cat(f"{target.path}/output/first.txt") == b"1"
    stub_hook.serve(make_zip(tmp_path / "two.zip", {"second.txt": b"2"}))
    store_outputs(stub_hook, "job-3", target, extract=True, log_lines=0)

    files = sorted(memory_storage.find("/bucket/runs"))
    assert files == [f"{target.path}/{name}" for name in ("manifest.json", "output.zip", "output/second.txt")]


def test_files_carrying_inputs_are_owner_only(tmp_path, stub_hook):
    stub_hook.serve(make_zip(tmp_path / "o.zip", {"ccp-entrypoint.sh": b"echo x", "ccpenv": b"a=1", "r.txt": b"r"}))
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)

    store_outputs(stub_hook, "job", target, extract=True, log_lines=0)

    folder = Path(target.path) / "output"
    assert stat.S_IMODE((folder / "ccp-entrypoint.sh").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "ccpenv").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "r.txt").stat().st_mode) & 0o044


def test_with_a_secret_input_the_input_files_are_left_out_and_the_archive_is_private(tmp_path, stub_hook):
    entries = {"ccp-entrypoint.sh": b"echo s3cr3t", "ccpenv": b"token=s3cr3t", "r.txt": b"r"}
    stub_hook.serve(make_zip(tmp_path / "o.zip", entries))
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)

    stored = store_outputs(stub_hook, "job", target, extract=True, log_lines=0, secret_inputs=True)

    assert tree(Path(target.path) / "output") == ["r.txt"]
    assert sorted(stored.withheld) == ["ccp-entrypoint.sh", "ccpenv"]
    assert stat.S_IMODE((Path(target.path) / "output.zip").stat().st_mode) == 0o600


# ---------------------------------------------------------------- archives zipfile cannot read (issue 19)


def set_flag(raw: bytearray, offset_in_local: int, offset_in_central: int, value: bytes) -> None:
    """Write ``value`` at the same field of every local header and central directory record."""
    for signature, offset in ((b"PK\x03\x04", offset_in_local), (b"PK\x01\x02", offset_in_central)):
        start = raw.find(signature)
        while start != -1:
            raw[start + offset : start + offset + len(value)] = value
            start = raw.find(signature, start + 4)


def encrypted(raw: bytearray) -> None:
    set_flag(raw, 6, 8, struct.pack("<H", 0x1))


def compression_method(method: int):
    return lambda raw: set_flag(raw, 8, 10, struct.pack("<H", method))


def central_directory_cut(raw: bytearray) -> None:
    """The central directory loses its second record, the end record still counts two."""
    first = raw.find(b"PK\x01\x02")
    second = raw.find(b"PK\x01\x02", first + 4)
    end = raw.find(b"PK\x05\x06")
    raw[second:end] = b""


def zip64_sizes_missing(path: Path) -> Path:
    """The central record says "size in the zip64 extra field" (0xFFFFFFFF), whose field is empty."""
    info = zipfile.ZipInfo("big.txt")
    info.extra = struct.pack("<HH", 0x0001, 0)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, b"zip64 sized")
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")
    raw[central + 24 : central + 28] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(raw))
    return path


DEEP = "/".join(["d"] * 2100)
HOSTILE_ARCHIVES = {
    "2,100 folders deep": (
        lambda p: make_zip(p, {f"{DEEP}/f.txt": b"deep"}),
        r"its entry 'd/d/.*' lies 2100 folders deep, more than the 200 extracted; nothing was extracted",
    ),
    "a folder 2,100 deep": (
        lambda p: make_zip(p, {f"{DEEP}/": b""}),
        r"lies 2100 folders deep",
    ),
    "encrypted member": (
        lambda p: patched_zip(p, {"ok.txt": b"fine", "secret.txt": b"locked"}, encrypted),
        r"its entry 'ok.txt' is encrypted \(a password-protected zip\); nothing was extracted",
    ),
    "unsupported compression (AES, 99)": (
        lambda p: patched_zip(p, {"a.txt": b"hello"}, compression_method(99)),
        r"could not be read: That compression method is not supported",
    ),
    "implode compression (6)": (
        lambda p: patched_zip(p, {"a.txt": b"hello"}, compression_method(6)),
        r"could not be read: That compression method is not supported",
    ),
    "central directory cut short": (
        lambda p: patched_zip(p, {"a.txt": b"hello", "b.txt": b"world"}, central_directory_cut),
        r"is not a valid zip file",
    ),
    "zip64 sizes missing": (zip64_sizes_missing, r"is not a valid zip file: Corrupt zip64 extra field"),
}


@pytest.mark.parametrize("case", list(HOSTILE_ARCHIVES))
def test_an_unreadable_archive_is_a_download_error_and_old_outputs_stay(tmp_path, stub_hook, case):
    build, message = HOSTILE_ARCHIVES[case]
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)
    stub_hook.serve(make_zip(tmp_path / "good.zip", {"good.txt": b"old and complete"}))
    store_outputs(stub_hook, "job-1", target, extract=True, log_lines=0)
    before = tree(tmp_path / "root")
    stub_hook.serve(build(tmp_path / "hostile.zip"))

    with pytest.raises(CCPDownloadError, match=message) as raised:
        store_outputs(stub_hook, "job-2", target, extract=True, log_lines=5)

    assert "\n" not in str(raised.value)
    assert len(str(raised.value)) < 400
    assert tree(tmp_path / "root") == before  # nothing half-extracted, no staging folder left
    assert (Path(target.path) / "output" / "good.txt").read_bytes() == b"old and complete"


def test_an_encrypted_std_stream_is_a_download_error_when_only_listing(tmp_path, stub_hook):
    # extract=False still reads stdout for the log tail: the password error must not escape raw.
    stub_hook.serve(patched_zip(tmp_path / "locked.zip", {"stdout.1.txt": b"log"}, encrypted))
    target = task_output_path(str(tmp_path / "root"), "d", "r", "t", None)

    with pytest.raises(CCPDownloadError, match=r"'stdout\.1\.txt' is encrypted"):
        store_outputs(stub_hook, "job-1", target, extract=False, log_lines=5)
