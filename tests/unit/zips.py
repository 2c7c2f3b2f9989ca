"""Archives for the output tests, well-formed or as a hostile server would damage them."""

from __future__ import annotations

import stat
import warnings
import zipfile
from pathlib import Path


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


def patched_zip(path: Path, entries: dict[str, bytes], patch, compression: int = zipfile.ZIP_STORED) -> Path:
    """A zip of ``entries`` whose bytes ``patch`` then changes in place (a hostile server's handiwork)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    raw = bytearray(path.read_bytes())
    patch(raw)
    path.write_bytes(bytes(raw))
    return path
