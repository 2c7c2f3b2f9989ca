"""Benchmark: what one poll of ``CCPExecutionEventTrigger`` costs for an account of 1,000 and 10,000 jobs.

Not a pytest module; run it by hand or with ``make bench``:

    python tests/benchmarks/execution_listing.py [--jobs 1000 10000] [--polls 5]

The fast fake CCP (``fake_ccp.py``, its own process) lists N ended executions of one Method in the shape
of CCP's documented jobStatus (no ``finished``; ``updated`` the time of the listing). The trigger runs in
this process at a short poll interval until it has made ``--polls`` listings after its first start. For
each N it prints: the CCP requests per poll (pages of ``LISTING_PAGE_SIZE``; the earlier page size of 100
beside it), the client CPU per poll, the events fired (must be 0: every execution ended before the
watcher started) and the size of the record the trigger stores. The baseline, in the same run: a bare
aiohttp loop that fetches and decodes the same pages, the least a listing can cost in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_ccp import FakeServer, cpu_seconds

POLL = 0.2


class Store:
    """Airflow 3.3's asset state store, in memory: what the trigger saves, and how large it is."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.loads(json.dumps(value))


async def until(ready: Callable[[], bool]) -> None:
    """Another process's counter is no event to wait on: look every 0.2 s (about 1 ms of this process's CPU)."""
    while not ready():  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def trigger_polls(server: FakeServer, requests: int) -> dict[str, float]:
    from airflow_provider_ccp.triggers.ccp import CCPExecutionEventTrigger

    trigger = CCPExecutionEventTrigger(ccp_conn_id="ccp_bench", method_id="m", poll_interval=POLL)
    trigger.asset_state_store = Store()
    events = trigger.run()
    fired = 0

    async def run() -> None:
        nonlocal fired
        async for _ in events:
            fired += 1

    task = asyncio.ensure_future(run())
    await until(lambda: trigger._reported is not None)  # the first start is over
    start_listings, start_cpu = server.stats()["listings"], cpu_seconds()
    await until(lambda: server.stats()["listings"] - start_listings >= requests)
    cpu, listings = cpu_seconds() - start_cpu, server.stats()["listings"] - start_listings
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stored = json.dumps(trigger.asset_state_store.values)
    return {"requests": listings, "cpu": cpu, "fired": fired, "stored_bytes": len(stored)}


async def bare_polls(url: str, pages: int, polls: int, page_size: int) -> float:
    import aiohttp

    start = cpu_seconds()
    async with aiohttp.ClientSession() as session:
        for _ in range(polls):
            for page in range(pages):
                params = {"limit": str(page_size), "offset": str(page * page_size), "processID": "m"}
                async with session.get(f"{url}/jobs", params=params) as answer:
                    json.loads(await answer.read())
    return cpu_seconds() - start


def measure(jobs: int, polls: int) -> None:
    from airflow_provider_ccp.triggers.executions import LISTING_PAGE_SIZE

    with FakeServer(jobs=jobs) as server:
        os.environ["AIRFLOW_CONN_CCP_BENCH"] = server.connection_json()
        pages = math.ceil(jobs / LISTING_PAGE_SIZE)
        started = time.monotonic()
        figures = asyncio.run(trigger_polls(server, polls * pages))
        measured_polls = figures["requests"] / pages
        bare = asyncio.run(bare_polls(server.url, pages, polls, LISTING_PAGE_SIZE)) / polls
        elapsed = time.monotonic() - started
    per_poll = figures["cpu"] / measured_polls
    print(
        f"{jobs:>6} jobs: {pages} requests per poll (page size {LISTING_PAGE_SIZE}; "
        f"{math.ceil(jobs / 100)} at the earlier 100), trigger {per_poll * 1000:.1f} ms CPU per poll against "
        f"{bare * 1000:.1f} ms for the bare aiohttp fetch of the same pages ({per_poll / bare:.2f}x), "
        f"{figures['fired']:.0f} events (expected 0), stored record {figures['stored_bytes'] / 1024:.1f} KiB, "
        f"{measured_polls:.1f} polls measured in {elapsed:.0f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args()
    for jobs in args.jobs:
        measure(jobs, args.polls)


if __name__ == "__main__":
    main()
