"""Benchmark: how long ``CCPHook.download_outputs`` stays on an ``output.zip`` dripped at 2 bytes/s, at the
connection's default settings (``timeout`` 60 s, ``min_download_rate`` 1024 bytes/s).

Not a pytest module (pytest collects only ``test_*.py``); run it by hand or with ``make bench``:

    python tests/benchmarks/dripped_download.py [--rate 2] [--goal 120]

A server on 127.0.0.1 (threads of this process) announces an archive of 1 MiB and sends it at
``--rate`` bytes per second; the download must end with a ``CCPDownloadError`` naming the rate
within ``--goal`` seconds. The baseline from the same run: the same server sending the same archive
at full speed, which the hook must save whole. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.integration.doubles import RawServer

SIZE = 1024 * 1024
HEAD = f"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {SIZE}\r\n\r\n".encode()


def answer(rate: float) -> Callable[[socket.socket], None]:
    """The archive's head, then its bytes at ``rate`` per second (0: at once)."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(HEAD)
        if not rate:
            conn.sendall(b"z" * SIZE)
            return
        for _ in range(SIZE):
            time.sleep(1 / rate)
            conn.sendall(b"z")

    return handle


def download(url: str, folder: Path) -> tuple[float, str]:
    """Seconds ``download_outputs`` took, and how it ended."""
    from airflow_provider_ccp.exceptions import CCPDownloadError
    from airflow_provider_ccp.hooks.ccp import CCPHook

    # Nothing but the host and no authentication: every other setting at its default.
    os.environ["AIRFLOW_CONN_CCP_DRIP"] = json.dumps({"conn_type": "ccp", "host": url, "extra": {"auth_flow": "none"}})
    clock = time.monotonic()
    try:
        saved = CCPHook("ccp_drip").download_outputs("bench-job", folder)
    except CCPDownloadError as err:
        return time.monotonic() - clock, f"CCPDownloadError: {err}"
    return time.monotonic() - clock, f"saved {saved.size} bytes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2.0, help="bytes per second of the drip (default 2)")
    parser.add_argument("--goal", type=float, default=120.0, help="most seconds the drip may hold (default 120)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccp-drip-benchmark-") as scratch:
        os.environ.setdefault("AIRFLOW_HOME", str(Path(scratch) / "airflow-home"))
        ends = []
        for rate in (0, args.rate):
            server = RawServer(answer(rate))
            try:
                ends.append(download(server.url, Path(scratch)))
            finally:
                server.stop()
    (fast_seconds, fast_end), (drip_seconds, drip_end) = ends
    whole = fast_end == f"saved {SIZE} bytes"
    ended = drip_end.startswith("CCPDownloadError: ") and "min_download_rate" in drip_end
    in_time = ended and drip_seconds <= args.goal
    print(f"full speed (baseline): {fast_seconds:6.2f} s, {fast_end}: {'PASS' if whole else 'FAIL'}")
    print(f"dripped at {args.rate:g} bytes/s: {drip_seconds:6.1f} s, {drip_end}")
    print(f"dripped download ended by the rate within {args.goal:g} s: {'PASS' if in_time else 'FAIL'}")
    return 0 if whole and in_time else 1


if __name__ == "__main__":
    sys.exit(main())
