"""Large outputs are stored (not deflated) in output.zip and streamed, never held in memory."""

from __future__ import annotations

import resource
import zipfile

from ccp_client import CCP

SIZE = 256 * 1024 * 1024


def test_large_output_is_stored_and_streamed(ccp: CCP, tmp_path) -> None:
    job_id = ccp.start("make-files", count="1", size=str(SIZE))
    assert ccp.wait(job_id, timeout=120)["status"] == "successful"
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    target = tmp_path / "output.zip"
    with ccp.get(f"/executions/{job_id}/outputs/output.zip", stream=True) as answer:
        assert answer.status_code == 200
        with open(target, "wb") as sink:
            for chunk in answer.iter_content(1024 * 1024):
                sink.write(chunk)
        assert int(answer.headers["content-length"]) == target.stat().st_size

    # The server runs in this process: had it (or the zip step) loaded the file, the peak would show it.
    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert peak_growth < SIZE / 4
    with zipfile.ZipFile(target) as archive:
        big = archive.getinfo("files/file-1.bin")
        assert (big.file_size, big.compress_type) == (SIZE, zipfile.ZIP_STORED)
        assert archive.getinfo("stdout.1.txt").compress_type == zipfile.ZIP_DEFLATED
