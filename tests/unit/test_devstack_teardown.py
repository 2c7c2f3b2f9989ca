"""``make demo`` and ``make airflow`` stop what they started through one context manager, however they end."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from scripts.devstack import StackError, stopped_at_exit, terminate


class Recorder(contextlib.AbstractContextManager[object]):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def __enter__(self) -> object:
        self.log.append("announce")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.log.append("announced")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield process
    if process.poll() is None:
        terminate([process], signal.SIGKILL, 0)


@pytest.mark.parametrize("ending", [None, KeyboardInterrupt, StackError, SystemExit])
def test_everything_registered_stops_last_first_inside_the_announcement(
    ending: type[BaseException] | None, sleeper: subprocess.Popen[bytes]
) -> None:
    log: list[str] = []
    with contextlib.suppress(BaseException), stopped_at_exit(Recorder(log)) as started:
        started.callback(lambda: log.append("sandbox stopped"))
        started.callback(lambda: (terminate([sleeper], signal.SIGTERM, 5), log.append("airflow stopped")))
        if ending is not None:
            raise ending
    assert log == ["announce", "airflow stopped", "sandbox stopped", "announced"]
    assert sleeper.returncode is not None  # the real process is gone, not just forgotten


def test_the_ending_still_reaches_the_script() -> None:
    with pytest.raises(StackError, match="the run ended failed"), stopped_at_exit(contextlib.nullcontext()):
        raise StackError("the run ended failed")


def test_demo_and_make_airflow_stop_through_it() -> None:
    from scripts import airflow_local, demo

    assert airflow_local.stopped_at_exit is stopped_at_exit
    assert demo.stopped_at_exit is stopped_at_exit
