"""Benchmark: many ``CCPJobTrigger`` s in one event loop, the way the triggerer runs them.

    python tests/benchmarks/triggerer_load.py [--triggers 1000] [--interval 1] [--duration 60] [--warmup S]
        [--modes bare-per-client,bare-aiohttp,trigger] [--gc-freeze] [--profile DIR]

Each mode runs in a fresh child process against the fast fake CCP (``fake_ccp.py``, its own
process), with the same number of pollers, the same interval and the same spread of polls (first
poll anywhere in the first interval, each wait jittered by 10%), so that only the client differs:

- ``trigger``: ``CCPJobTrigger.run()`` for every job (the provider as installed, as the triggerer runs
  it: aiohttp), plus a worker thread calling the sync ``CCPHook`` once a second, so both kinds of caller
  share the tokens;
- ``bare-per-client``: a bare loop per job with its own ``httpx.AsyncClient`` (the baseline);
- ``bare-shared``: a bare loop per job, all sharing one ``httpx.AsyncClient`` with default limits;
- ``bare-aiohttp``: a bare loop per job, all sharing one ``aiohttp.ClientSession`` whose connector holds
  at most 50 connections kept alive 120 s (the provider's pool bounds): the floor of the provider's client.

After a warm-up (``--warmup``, default two intervals) it measures for ``--duration`` seconds: CPU per
poll (process CPU over polls answered by the server) and its ratio to the first mode's, the fake
server's own CPU per poll (the physical floor: what answering costs, against what asking costs),
event-loop lag (a 10 ms ticker's overshoot: p50/p99/max), polls on time (a poll at most 10% + 100 ms
after the same job's previous one, counted by the server), RSS per poller (growth from before the
pollers started), TCP connections opened (in the window: reconnects, as a share of polls), token
grants per token lifetime (``--token-lifetime``) and the cyclic GC's pauses by generation
(``gc.callbacks``: count and longest pause of generations 1 and 2, which is what the lag is made of).
No ``gc.freeze()`` unless ``--gc-freeze``: Airflow's triggerer does not freeze. ``--profile DIR`` runs
cProfile over the measured window and writes each mode's CPU by component and its costliest functions
to ``DIR/MODE.txt`` (cProfile slows the run: read the shares, not the figures). tests/benchmarks/README.md
has the profiles and figures.

Profiler findings that shaped the provider's poll path (py-spy, 1,000 triggers at 1 s, before the
changes): httpx/httpcore/anyio took ~69% of the CPU and the provider ~13%, of which a
``tenacity.AsyncRetrying`` built per request (6.5%, ~35 objects per poll for the cyclic GC), a token
cache lookup that built two locks and a WeakKeyDictionary and hashed the credentials per request, and
``pendulum.parse`` of up to four timestamps per poll (22 us, against 4 us for the JSON). Event-loop
lag p99 was ~300 ms, mostly cyclic garbage collection over the per-trigger objects; one client per
trigger meant 1,000 TCP connections, and httpx's 5 s keep-alive meant a new connection per poll at
30 s. The provider now retries in a plain loop driven by one ``RetryPolicy``, keeps the token state
per hook, parses timestamps only when read, and shares one bounded client per (connection, loop).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_ccp import FakeServer, cpu_seconds

MODES = ("trigger", "bare-per-client", "bare-shared", "bare-aiohttp")
#: The modes that run the provider's triggers.
TRANSPORTS = frozenset({"trigger"})
CONN_ID = "ccp_bench"


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def spread(interval: float) -> float:
    return interval * (1.0 + 0.1 * (2.0 * random.random() - 1.0))


async def bare_poller(client: Any, url: str, interval: float) -> None:
    await asyncio.sleep(interval * random.random())
    while True:
        response = await client.get(url, headers={"Authorization": "Bearer bench", "Accept": "application/json"})
        json.loads(response.content)["status"]
        await asyncio.sleep(spread(interval))


class AiohttpClients:
    """One ``aiohttp.ClientSession`` with a bounded connector, answering like httpx for ``bare_poller``."""

    def __init__(self, size: int) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=size, keepalive_timeout=120)
        self.session = aiohttp.ClientSession(connector=connector)

    async def get(self, url: str, headers: dict[str, str]) -> Any:
        from types import SimpleNamespace

        async with self.session.get(url, headers=headers) as response:
            return SimpleNamespace(content=await response.read())

    async def aclose(self) -> None:
        await self.session.close()


async def per_client_poller(url: str, interval: float) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        await bare_poller(client, url, interval)


async def trigger_poller(job_id: str, interval: float) -> None:
    from airflow_provider_ccp.triggers.ccp import CCPJobTrigger

    async for event in CCPJobTrigger(CONN_ID, job_id, poll_interval=interval).run():
        raise RuntimeError(f"the trigger ended: {event.payload}")


def sync_caller(stop: threading.Event, calls: list[int]) -> None:
    """A worker thread using the sync hook in the same process: it shares the token cache."""
    from airflow_provider_ccp.hooks.ccp import CCPHook

    hook = CCPHook(CONN_ID)
    while not stop.wait(1.0):
        hook.get_job("sync-caller")
        calls[0] += 1


class GcPauses:
    """The cyclic collector's pauses by generation, from ``gc.callbacks``: what the loop lag is made of."""

    def __init__(self) -> None:
        self.pauses: list[list[float]] = [[], [], []]
        self.started = 0.0
        gc.callbacks.append(self.callback)

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self.started)

    def clear(self) -> None:
        for pauses in self.pauses:
            pauses.clear()

    def figures(self) -> dict[str, Any]:
        return {
            f"gc{generation}": [len(pauses), sum(pauses) * 1e3, max(pauses, default=0.0) * 1e3]
            for generation, pauses in enumerate(self.pauses)
        }


async def ticker(lags: list[float]) -> None:
    while True:
        start = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - start - 0.01)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def child(mode: str, args: argparse.Namespace, server_url: str) -> dict[str, Any]:
    import httpx
    from fake_ccp import FakeServer as Stats

    stats = Stats()
    stats.url = server_url
    if mode in TRANSPORTS:
        from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook

        # Airflow imports what a connection lookup needs on the first one: a process pays that at start-up.
        await CCPAsyncHook(CONN_ID).get_settings()
        await asyncio.to_thread(CCPHook(CONN_ID).get_job, "warm-up")
    start_stats = await asyncio.to_thread(stats.stats)
    gc.collect()
    gc_pauses = GcPauses()
    rss_before = rss()
    lags: list[float] = []
    stop, sync_calls = threading.Event(), [0]
    shared: Any = {
        "bare-shared": httpx.AsyncClient,
        "bare-aiohttp": lambda: AiohttpClients(50),
    }.get(mode, lambda: None)()
    tasks = [asyncio.create_task(ticker(lags))]
    for number in range(args.triggers):
        job_url = f"{server_url}/jobs/job-{number}"
        if mode in TRANSPORTS:
            tasks.append(asyncio.create_task(trigger_poller(f"job-{number}", args.interval)))
        elif shared is not None:
            tasks.append(asyncio.create_task(bare_poller(shared, job_url, args.interval)))
        else:
            tasks.append(asyncio.create_task(per_client_poller(job_url, args.interval)))
    worker = threading.Thread(target=sync_caller, args=(stop, sync_calls), daemon=True)
    if mode in TRANSPORTS:
        worker.start()
    await asyncio.sleep(args.warmup if args.warmup is not None else 2 * args.interval)
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    window_stats = await asyncio.to_thread(stats.stats)
    rss_warm = rss()
    profiler = cProfile.Profile() if args.profile else None
    cpu_start, clock = cpu_seconds(), time.monotonic()
    lags.clear()
    gc_pauses.clear()
    if profiler is not None:
        profiler.enable()
    await asyncio.sleep(args.duration)
    if profiler is not None:
        profiler.disable()
        write_profile(profiler, Path(args.profile) / f"{mode}.txt")
    cpu_used, elapsed = cpu_seconds() - cpu_start, time.monotonic() - clock
    gc_figures = gc_pauses.figures()
    window_lags = list(lags)
    end_stats = await asyncio.to_thread(stats.stats)
    stop.set()
    for task in tasks:
        task.cancel()
    failures = [
        repr(result)
        for result in await asyncio.gather(*tasks, return_exceptions=True)
        if not isinstance(result, asyncio.CancelledError)
    ]
    if shared is not None:
        await shared.aclose()
    polls = end_stats.get("polls", 0) - window_stats.get("polls", 0)
    repolls = end_stats.get("repolls", 0) - window_stats.get("repolls", 0)
    late = end_stats.get("late_polls", 0) - window_stats.get("late_polls", 0)
    grants = sum(end_stats.get(key, 0) - start_stats.get(key, 0) for key in end_stats if key.startswith("grant:"))
    return {
        "mode": mode,
        "pollers": args.triggers,
        "interval": args.interval,
        "seconds": elapsed,
        "polls": polls,
        "polls_per_poller_second": polls / args.triggers / elapsed,
        "cpu_per_poll_us": cpu_used / max(polls, 1) * 1e6,
        "cpu_share": cpu_used / elapsed,
        "server_cpu_per_poll_us": (end_stats["cpu"] - window_stats["cpu"]) / max(polls, 1) * 1e6,
        "on_time_share": 1.0 - late / max(repolls, 1),
        "lag_p50_ms": percentile(window_lags, 0.50) * 1e3,
        "lag_p99_ms": percentile(window_lags, 0.99) * 1e3,
        "lag_max_ms": max(window_lags, default=0.0) * 1e3,
        "rss_per_poller_kib": (rss_warm - rss_before) / args.triggers / 1024,
        "connections_total": end_stats["connections"] - start_stats["connections"],
        "connections_in_window": end_stats["connections"] - window_stats["connections"],
        "reconnect_share": (end_stats["connections"] - window_stats["connections"]) / max(polls, 1),
        "token_grants": grants,
        "sync_calls": sync_calls[0],
        "run_seconds": time.monotonic() - clock + (args.warmup if args.warmup is not None else 2 * args.interval),
        "failures": failures[:3],
        "gc_freeze": args.gc_freeze,
        **gc_figures,
    }


def component(filename: str) -> str:
    """Who a profiled function belongs to: the provider, a site package, asyncio, the kernel (C calls)."""
    if "airflow_provider_ccp" in filename:
        return "provider"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename == "~":
        return "C calls (sockets, epoll, json, ...)"
    if "/asyncio/" in filename:
        return "asyncio"
    return "benchmark" if filename == __file__ else "stdlib"


def write_profile(profiler: cProfile.Profile, target: Path) -> None:
    """CPU of their own by component, then the 30 costliest functions, by their own and by cumulative time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stats = pstats.Stats(profiler)
    shares: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        shares[component(filename)] = shares.get(component(filename), 0.0) + own
    total = sum(shares.values())
    with target.open("w") as out:
        for name, seconds in sorted(shares.items(), key=lambda item: -item[1]):
            out.write(f"{seconds / total:6.1%}  {name}\n")
        for order in ("tottime", "cumulative"):
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(30)


def run_mode(mode: str, args: argparse.Namespace, server: FakeServer, work: Path) -> dict[str, Any]:
    env = os.environ | {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": server.connection_json(),
        "AIRFLOW_HOME": str(work / "airflow-home"),
    }
    command = [sys.executable, __file__, "--child", mode, server.url, *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def report(results: list[dict[str, Any]], token_lifetime: float) -> None:
    base = results[0]
    print(
        f"\n{base['pollers']} pollers every {base['interval']:g} s, measured for {base['seconds']:.0f} s "
        f"(gc.freeze: {base['gc_freeze']}); ratio: CPU per poll against {base['mode']}; "
        f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}"
    )
    header = (
        f"{'mode':<16}{'polls/s':>8}{'CPU/poll us':>12}{'ratio':>6}{'server us':>10}{'CPU':>5}{'lag p50':>8}"
        f"{'p99':>7}{'max ms':>7}{'on time':>8}{'KiB/poller':>11}{'TCP':>6}{'reconn':>7}{'grants':>7}"
        f"{'gc2 n':>6}{'gc2 max':>8}{'gc1 max':>8}"
    )
    print(header)
    for row in results:
        ratio = row["cpu_per_poll_us"] / base["cpu_per_poll_us"]
        print(
            f"{row['mode']:<16}{row['polls'] / row['seconds']:>8.0f}{row['cpu_per_poll_us']:>12.0f}{ratio:>6.2f}"
            f"{row['server_cpu_per_poll_us']:>10.0f}{row['cpu_share']:>5.0%}{row['lag_p50_ms']:>8.1f}"
            f"{row['lag_p99_ms']:>7.1f}{row['lag_max_ms']:>7.0f}{row['on_time_share']:>8.1%}"
            f"{row['rss_per_poller_kib']:>11.1f}{row['connections_total']:>6}{row['reconnect_share']:>7.2%}"
            f"{row['token_grants']:>7}{row['gc2'][0]:>6}{row['gc2'][2]:>8.0f}{row['gc1'][2]:>8.0f}"
        )
        if row["failures"]:
            print(f"  failures: {row['failures']}")
    print("server us: the fake CCP's own CPU per poll (the floor); gc2 n / max: generation-2 collections, longest ms")
    for row in results:
        if row["mode"] in TRANSPORTS:
            usable = token_lifetime - min(60.0, token_lifetime * 0.1)
            lifetimes = max(1, -(-row["run_seconds"] // usable))
            print(
                f"{row['mode']}: token grants: {row['token_grants']} over {row['run_seconds']:.0f} s with "
                f"{row['sync_calls']} sync calls mixed in; a token is used {usable:.0f} s: "
                f"{row['token_grants'] / lifetimes:.2f} per lifetime"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured after the warm-up")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before measuring (default 2 intervals)")
    parser.add_argument("--token-lifetime", type=float, default=30.0)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the warm-up, in every mode")
    parser.add_argument("--modes", default="bare-per-client,bare-aiohttp,trigger")
    parser.add_argument("--profile", metavar="DIR", help="cProfile the measured window of each mode into DIR/MODE.txt")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "URL"), help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child[0], args, args.child[1]))))
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="ccp-triggerer-benchmark-") as scratch,
        FakeServer(token_lifetime=args.token_lifetime, interval=args.interval) as server,
    ):
        results = [run_mode(mode, args, server, Path(scratch)) for mode in args.modes.split(",")]
    report(results, args.token_lifetime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
