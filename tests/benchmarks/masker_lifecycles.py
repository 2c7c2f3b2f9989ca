"""Benchmark: 100,000 ``CCPJobTrigger`` lifecycles in one process, as a triggerer runs them for weeks.

Not a pytest module; run it by hand or with ``make bench``:

    python tests/benchmarks/masker_lifecycles.py [--lifecycles 100000] [--concurrent 100] [--keep 2000]

Each lifecycle is a trigger made, run to its one event and dropped: one poll of the fast fake CCP
(``fake_ccp.py``, its own process) for a running job whose deadline has passed, so the event is a timeout.
Triggers run ``--concurrent`` at a time on one event loop and share the connection's pool and token; the
token lives 2 seconds, so the run renews it (and replaces it in the masker) every second or two.

Three runs, each in a fresh process, print the process's RSS and the masker's size (its patterns, and
the length of the expression it runs over every redacted string) at ten checkpoints:

- ``secrets``: each trigger with a secret input of its own (a value no other trigger has);
- ``nothing``: the baseline, the same triggers with no secret input (nothing registered but the tokens);
- ``keep``: as ``secrets``, with the masker never told to forget (what the provider did before), for
  ``--keep`` lifecycles only: the masker rebuilds its expression at each new value, so the cost grows with
  the square of the values kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_ccp import FakeServer

CHECKPOINTS = 10


def rss_mib() -> float:
    """This process's resident set now (not its peak), from /proc."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class NoWaits:
    """The trigger's clock without its waits: the lifecycles, not the poll interval, are measured."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    @staticmethod
    async def asleep(seconds: float) -> None:
        await asyncio.sleep(0)


async def lifecycles(count: int, concurrent: int, with_secrets: bool) -> list[dict[str, Any]]:
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    from airflow_provider_ccp.masking import HELD
    from airflow_provider_ccp.triggers.ccp import CCPJobTrigger

    masker = _secrets_masker()
    figures: list[dict[str, Any]] = []
    started = time.monotonic()

    async def one(number: int) -> None:
        secrets = [f"bench-secret-{number:09d}-{os.getpid()}"] if with_secrets else []
        trigger = CCPJobTrigger("ccp_bench", f"job-{number}", poll_interval=30, end_time=1.0, secrets=secrets)
        trigger.clock = NoWaits()  # type: ignore[assignment]
        async for event in trigger.run():
            assert event.payload["status"] == "timeout", event.payload

    step = count // CHECKPOINTS
    for done in range(0, count, concurrent):
        await asyncio.gather(*(one(number) for number in range(done, min(done + concurrent, count))))
        finished = min(done + concurrent, count)
        if finished // step > len(figures):
            figures.append(
                {
                    "lifecycles": finished,
                    "seconds": round(time.monotonic() - started, 1),
                    "rss_mib": round(rss_mib(), 1),
                    "patterns": len(masker.patterns),
                    "expression_chars": len(masker.replacer.pattern) if masker.replacer else 0,
                    "held": len(HELD),
                }
            )
    return figures


def child(mode: str, count: int, concurrent: int) -> None:
    """One run, in its own process: its RSS is its own."""
    if mode == "keep":
        from airflow_provider_ccp import version_compat

        version_compat.forget_secrets = lambda secrets: None  # the provider before the masker was bounded
    figures = asyncio.run(lifecycles(count, concurrent, with_secrets=mode != "nothing"))
    print(json.dumps(figures))


def run(mode: str, count: int, concurrent: int, server: FakeServer) -> list[dict[str, Any]]:
    env = os.environ | {"AIRFLOW_CONN_CCP_BENCH": server.connection_json()}
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--lifecycles", str(count), "--concurrent", str(concurrent)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the {mode} run failed:\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def report(mode: str, figures: list[dict[str, Any]]) -> None:
    print(f"\n{mode}:")
    print(f"{'lifecycles':>10} {'seconds':>8} {'RSS MiB':>8} {'patterns':>9} {'expression chars':>17} {'held':>5}")
    for row in figures:
        print(
            f"{row['lifecycles']:>10,} {row['seconds']:>8} {row['rss_mib']:>8} {row['patterns']:>9,} "
            f"{row['expression_chars']:>17,} {row['held']:>5}"
        )
    # From the first checkpoint: imports, the pool and the first token are behind it.
    first, last = figures[0], figures[-1]
    lifecycles = last["lifecycles"] - first["lifecycles"]
    print(
        f"  from {first['lifecycles']:,} to {last['lifecycles']:,} lifecycles: "
        f"RSS {last['rss_mib'] - first['rss_mib']:+.1f} MiB, "
        f"masker patterns {last['patterns'] - first['patterns']:+,}, "
        f"{(last['seconds'] - first['seconds']) / lifecycles * 1e6:.0f} µs a lifecycle"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lifecycles", type=int, default=100_000)
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--keep", type=int, default=2_000, help="lifecycles of the run that never forgets (0: none)")
    parser.add_argument("--child", choices=["secrets", "nothing", "keep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.lifecycles, args.concurrent)
        return
    with FakeServer(token_lifetime=2.0) as server:
        runs = [("secrets", args.lifecycles), ("nothing", args.lifecycles)]
        runs += [("keep", args.keep)] if args.keep else []
        results = {}
        for mode, count in runs:
            results[mode] = run(mode, count, args.concurrent, server)
            report(mode, results[mode])
        # What the secrets cost in memory, the baseline's own growth (caches filling up) set aside.
        extra = [
            row["rss_mib"] - base["rss_mib"] for row, base in zip(results["secrets"], results["nothing"], strict=True)
        ]
        print(f"\nRSS of secrets minus nothing at each checkpoint (MiB): {', '.join(f'{mib:+.1f}' for mib in extra)}")
        print(f"\nfake CCP: {json.dumps(server.stats())}")


if __name__ == "__main__":
    main()
