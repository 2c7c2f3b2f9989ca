"""Benchmark: ``ccp-airflow --help`` against ``python -c "import airflow"``, same machine, same run.

    python tests/benchmarks/cli_startup.py [--rounds 7] [--max-ratio 0.3]

Each round starts both as fresh processes of this venv, one after the other, so that a noisy neighbour
slows both alike; the figures are the median wall times, and the ratio help / import. Help, ``--version``
and argument errors never import Airflow (tests/cli/test_cli_startup.py checks that): what is left is
Python's start-up, argparse and the provider's light modules.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-ratio", type=float, default=0.3, help="exit 1 when help / import is above this")
    args = parser.parse_args()
    commands = {
        "ccp-airflow --help": [str(BIN / "ccp-airflow"), "--help"],
        "ccp-airflow --version": [str(BIN / "ccp-airflow"), "--version"],
        'python -c "import airflow"': [sys.executable, "-c", "import airflow"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            times[name].append(wall(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians['python -c "import airflow"']
    for name, median in medians.items():
        print(f"{name:<28} median {median:6.2f} s  ({median / baseline:.2f}x import airflow)")
    ratio = medians["ccp-airflow --help"] / baseline
    print(f"ccp-airflow --help / import airflow: {ratio:.2f} (goal <= {args.max_ratio})")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
