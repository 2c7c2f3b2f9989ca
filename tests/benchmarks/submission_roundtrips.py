"""Benchmark: ``CCPHook.submit_execution`` round trips against raw requests, same server, same run.

    python tests/benchmarks/submission_roundtrips.py [--submissions 2000] [--max-ratio 1.2]

Against the fast fake CCP (``fake_ccp.py``, its own process), in one process: first the baseline, a
``requests.Session`` posting the same execute body with a bearer token and reading the jobID from the
JSON answer; then the hook (token cached after the first call, the body built by ``protocol``, the
answer read into a statusInfo). The two alternate in rounds, so that a noisy neighbour on the machine
slows both alike; the figure is the median round's time per submission, and the ratio hook / raw.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_ccp import FakeServer

INPUTS = {"ccpimage": "bash", "text": "benchmark", "mode": "words"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=2000, help="per client, over all rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-ratio", type=float, default=1.2)
    args = parser.parse_args()

    import requests

    from airflow_provider_ccp.hooks.ccp import CCPHook

    per_round = max(1, args.submissions // args.rounds)
    with tempfile.TemporaryDirectory(prefix="ccp-submission-benchmark-") as scratch, FakeServer() as server:
        os.environ.setdefault("AIRFLOW_HOME", str(Path(scratch) / "airflow-home"))
        os.environ["AIRFLOW_CONN_CCP_DEFAULT"] = server.connection_json()
        hook = CCPHook()
        token = hook.get_token()
        url = f"{server.url}/processes/word-count/execution"
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Prefer": "respond-async", "Accept": "application/json"}

        def raw() -> str:
            answer = session.post(url, json={"inputs": INPUTS, "response": "raw"}, headers=headers, timeout=30)
            answer.raise_for_status()
            return str(json.loads(answer.content)["jobID"])

        def provider() -> str:
            return str(hook.submit_execution("word-count", INPUTS).job_id)

        timings: dict[str, list[float]] = {"raw requests": [], "CCPHook": []}
        for client in (raw, provider):  # warm both connections up
            client()
        for _ in range(args.rounds):
            for name, client in (("raw requests", raw), ("CCPHook", provider)):
                clock = time.perf_counter()
                for _ in range(per_round):
                    client()
                timings[name].append((time.perf_counter() - clock) / per_round)
        submitted = server.stats().get("submissions", 0)

    raw_us = statistics.median(timings["raw requests"]) * 1e6
    hook_us = statistics.median(timings["CCPHook"]) * 1e6
    ratio = hook_us / raw_us
    print(f"{per_round * args.rounds} submissions per client in {args.rounds} alternating rounds ({submitted} in all)")
    print(f"raw requests: {raw_us:8.0f} us per round trip (median round)")
    print(f"CCPHook:      {hook_us:8.0f} us per round trip (median round)")
    ok = ratio <= args.max_ratio
    print(f"ratio {ratio:.2f}x raw requests, target <= {args.max_ratio:.2f}x: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
