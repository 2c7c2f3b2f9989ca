"""Zipping a job's data folder into output.zip, cheaply even for very large outputs."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

# Above this size a file is stored, not deflated: compressing (random) gigabytes would take minutes.
STORE_ABOVE = 1024 * 1024


def build_zip(source: Path, destination: Path, leave_out: Callable[[str], bool] = lambda name: False) -> None:
    """Write ``destination`` atomically, so a download never sees a half-written archive.

    ``leave_out`` names (by their path in the archive) the files that stay out of it.
    """
    partial = destination.with_name(destination.name + ".partial")
    with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
        for path in sorted(source.rglob("*")):
            if not path.is_file() or leave_out(path.relative_to(source).as_posix()):
                continue
            compression = zipfile.ZIP_STORED if path.stat().st_size > STORE_ABOVE else zipfile.ZIP_DEFLATED
            archive.write(path, path.relative_to(source).as_posix(), compress_type=compression)
    os.replace(partial, destination)
