"""Zipping a job's data folder into output.zip, cheaply even for very large outputs."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

# Above this size a file is stored, not deflated: compressing (random) gigabytes would take minutes.
STORE_ABOVE = 1024 * 1024


def build_zip(source: Path, destination: Path) -> None:
    """Write ``destination`` atomically, so a download never sees a half-written archive."""
    partial = destination.with_name(destination.name + ".partial")
    with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
        for path in sorted(source.rglob("*")):
            if not path.is_file():
                continue
            compression = zipfile.ZIP_STORED if path.stat().st_size > STORE_ABOVE else zipfile.ZIP_DEFLATED
            archive.write(path, path.relative_to(source).as_posix(), compress_type=compression)
    os.replace(partial, destination)
