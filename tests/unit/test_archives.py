"""What is extracted from an output.zip, what is refused, and the tails read from it (no network)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from airflow_provider_ccp import archives
from airflow_provider_ccp.archives import extract_archive, list_archive, read_tails, unsafe_reason
from airflow_provider_ccp.exceptions import CCPDownloadError
from airflow_provider_ccp.outputs import storage_path
from tests.unit.zips import damaged_zip, make_zip, patched_zip


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
    assert {"path": "a.txt", "uri": None, "size": 1} in list_archive(archive)


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


def test_a_depth_within_the_limit_is_extracted(tmp_path):
    name = "/".join(["d"] * archives.MAX_ENTRY_DEPTH) + "/f.txt"
    archive = make_zip(tmp_path / "o.zip", {name: b"deep but fine"})

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert (refused, [item["path"] for item in files]) == ([], [name])


def test_a_nul_byte_in_a_name_is_refused_not_cut(tmp_path):
    # zipfile cuts the name at the NUL ("a\0b.txt" reads as "a"): the entry must not land as "a".
    archive = patched_zip(tmp_path / "o.zip", {"ok.txt": b"fine", "aXb.txt": b"nul"}, lambda raw: None)
    raw = archive.read_bytes().replace(b"aXb.txt", b"a\x00b.txt")
    archive.write_bytes(raw)

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == ["a"]
    assert [item["path"] for item in files] == ["ok.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok.txt"]


@pytest.mark.parametrize("name", ["n" * 5000 + ".txt", "/".join(["n" * 250] * 40)], ids=["long name", "long path"])
def test_an_absurdly_long_name_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "o.zip", {"ok.txt": b"fine", name: b"long"})

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == [name]
    assert [item["path"] for item in files] == ["ok.txt"]
    assert unsafe_reason(zipfile.ZipInfo(name)) == "has a name longer than 1024 bytes"


def test_a_folder_entry_with_data_is_a_folder(tmp_path):
    archive = make_zip(tmp_path / "o.zip", {"folder/": b"data a folder cannot hold", "folder/f.txt": b"f"})

    files, refused = extract_archive(archive, storage_path(str(tmp_path / "out")))

    assert refused == []
    assert [item["path"] for item in files] == ["folder/f.txt"]
    assert (tmp_path / "out" / "folder").is_dir()
