"""Benchmark: ``CCPHook.download_outputs`` of a 1 GiB output: throughput against curl, and peak RSS growth.

Not a pytest module (pytest collects only ``test_*.py``); run it by hand or with ``make bench``:

    python tests/benchmarks/download_memory.py [--size BYTES] [--limit-mib 64] [--min-ratio 0.8] [--control]

It starts the fast fake CCP (``fake_ccp.py``, its own process), which serves an ``output.zip`` of SIZE
bytes (default 1 GiB), and measures the download in a fresh child process. The same run downloads the
same URL with curl into a file on the same disk, fsync'ed like the hook's, as the throughput baseline:
the hook must reach ``--min-ratio`` of curl's throughput. The baseline for memory is the child's
resident size after an idle hook call (a token and one ``get_job``); during the download the resident
size is sampled after every chunk, and the peak high-water mark (``ru_maxrss``) is compared before
and after. The reported growth is the larger of the two; exit status 1 when a target is missed.
``--control`` also measures a naive download that holds the archive in memory, to show what the
measurement sees when memory does grow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_ccp import FakeServer

MiB = 1024 * 1024


def peak_rss() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """Resident set size now, in bytes (Linux: /proc/self/statm counts pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(job_id: str, destination: str, mode: str) -> None:
    """Runs in the measuring process: the connection comes from AIRFLOW_CONN_CCP_DEFAULT.

    The peak high-water mark alone could hide the download (start-up peaks high, then frees), so the
    resident size is also sampled after every chunk, through the download's progress callback.
    """
    from airflow_provider_ccp import protocol
    from airflow_provider_ccp.hooks.ccp import CCPHook

    hook = CCPHook()
    before_idle = current_rss()
    hook.get_job(job_id)
    baseline = current_rss()
    peak_before = peak_rss()
    highest = baseline

    def sample(done: int, total: int | None) -> None:
        nonlocal highest
        highest = max(highest, current_rss())

    clock = time.monotonic()
    if mode == "hook":
        size = hook.download_outputs(job_id, destination, progress=sample).size
    else:
        # The control: what holding the whole archive in memory looks like to this measurement.
        url = protocol.output_zip_url(hook.settings.base_url, job_id)
        body = hook.session.get(url, headers={"Authorization": f"Bearer {hook.get_token()}"}, timeout=600).content
        sample(len(body), len(body))
        size = len(body)
        Path(destination).write_bytes(body)
        del body
    print(
        json.dumps(
            {
                "mode": mode,
                "size": size,
                "seconds": time.monotonic() - clock,
                "rss_before_idle_call": before_idle,
                "rss_baseline": baseline,
                "rss_highest_sampled": highest,
                "peak_rss_before": peak_before,
                "peak_rss_after": peak_rss(),
            }
        )
    )


def measure(job_id: str, destination: Path, mode: str) -> dict:
    measured = subprocess.run(
        [sys.executable, __file__, "--child", job_id, str(destination), mode],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
    )
    if measured.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{measured.stdout}\n{measured.stderr}")
    destination.unlink(missing_ok=True)
    return json.loads(measured.stdout.strip().splitlines()[-1])


def report(figures: dict) -> float:
    growth = max(figures["rss_highest_sampled"] - figures["rss_baseline"], 0)
    peak_growth = figures["peak_rss_after"] - figures["peak_rss_before"]
    idle = figures["rss_baseline"] - figures["rss_before_idle_call"]
    print(f"[{figures['mode']}] output.zip of {figures['size'] / MiB:.1f} MiB in {figures['seconds']:.1f} s")
    print(f"  RSS before an idle hook call (get_job):  {figures['rss_before_idle_call'] / MiB:8.1f} MiB")
    print(f"  RSS after it (baseline):                 {figures['rss_baseline'] / MiB:8.1f} MiB  (+{idle / MiB:.1f})")
    print(f"  highest RSS sampled while downloading:   {figures['rss_highest_sampled'] / MiB:8.1f} MiB")
    print(f"  growth over the baseline:                {growth / MiB:8.1f} MiB")
    print(
        f"  peak RSS (ru_maxrss) before -> after:    {figures['peak_rss_before'] / MiB:8.1f} -> "
        f"{figures['peak_rss_after'] / MiB:.1f} MiB (+{peak_growth / MiB:.1f})"
    )
    return max(growth, peak_growth)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024 * MiB, help="bytes of the one output file (default 1 GiB)")
    parser.add_argument("--limit-mib", type=float, default=64.0, help="largest allowed RSS growth (default 64)")
    parser.add_argument("--min-ratio", type=float, default=0.8, help="lowest throughput against curl (default 0.8)")
    parser.add_argument(
        "--control", action="store_true", help="also measure a naive in-memory download, to show the method detects it"
    )
    parser.add_argument("--child", nargs=3, metavar=("JOB_ID", "DESTINATION", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    job_id = "bench-job"
    with tempfile.TemporaryDirectory(prefix="ccp-download-benchmark-") as scratch:
        work = Path(scratch)
        os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow-home"))
        with FakeServer(output_size=args.size) as server:
            os.environ["AIRFLOW_CONN_CCP_DEFAULT"] = server.connection_json()
            curl_seconds = curl_download(f"{server.url}/executions/{job_id}/outputs/output.zip", work / "curl.zip")
            results = [measure(job_id, work / "download.zip", "hook")]
            if args.control:
                results.append(measure(job_id, work / "download.zip", "in-memory"))

    growth = report(results[0])
    for control in results[1:]:
        report(control)
    hook_rate = results[0]["size"] / results[0]["seconds"] / MiB
    curl_rate = args.size / curl_seconds / MiB
    ratio = hook_rate / curl_rate
    fast_enough = ratio >= args.min_ratio
    small_enough = growth < args.limit_mib * MiB
    print(f"curl (same server, same disk, fsync'ed): {curl_rate:8.0f} MiB/s ({curl_seconds:.1f} s)")
    print(f"download_outputs:                        {hook_rate:8.0f} MiB/s ({results[0]['seconds']:.1f} s)")
    print(f"throughput {ratio:.2f}x curl, target >= {args.min_ratio:.2f}x: {'PASS' if fast_enough else 'FAIL'}")
    print(
        f"download_outputs RSS growth {growth / MiB:.1f} MiB, limit {args.limit_mib:.0f} MiB: "
        f"{'PASS' if small_enough else 'FAIL'}"
    )
    return 0 if fast_enough and small_enough else 1


def curl_download(url: str, target: Path) -> float:
    """Seconds curl takes to save ``url`` to ``target`` and fsync it (the hook fsyncs before publishing)."""
    clock = time.monotonic()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(target), "-H", "Authorization: Bearer bench", url], check=True)
    with open(target, "rb") as saved:
        os.fsync(saved.fileno())
    seconds = time.monotonic() - clock
    target.unlink()
    return seconds


if __name__ == "__main__":
    sys.exit(main())
