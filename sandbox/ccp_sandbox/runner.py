"""Running a job's entrypoint with bash: one process group per replica, ccpmaxtime, dismissal, shutdown.

Every replica runs in its own session (``start_new_session``) so that killing its process group
also kills whatever the script started, the way destroying CCP's container would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from ccp_sandbox.archive import build_zip
from ccp_sandbox.jobs import DISMISSED, FAILED, RUNNING, SUCCESSFUL, Job, Replica

ENTRYPOINT = "ccp-entrypoint.sh"
ENV_FILE = "ccpenv"
# Only these survive from the sandbox's own environment: a Method must not see the developer's secrets.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


class JobRunner:
    def __init__(self, launch_seconds: float = 0.0) -> None:
        self._jobs: list[Job] = []
        self._launch_seconds = launch_seconds

    def prepare(self, job: Job, ccp_env: Mapping[str, str]) -> None:
        """Lay out the job folder (what CCP's Deploy phase would put in /ccp_data)."""
        job.data_dir.mkdir(parents=True)
        entrypoint = job.data_dir / ENTRYPOINT
        entrypoint.write_text(job.plan.script, encoding="utf-8")
        entrypoint.chmod(0o755)
        (job.data_dir / ENV_FILE).write_text("".join(f"{k}={v}\n" for k, v in ccp_env.items()), encoding="utf-8")
        self._jobs.append(job)

    def start(self, job: Job, ccp_env: Mapping[str, str]) -> None:
        job.task = asyncio.get_running_loop().create_task(self._run(job, ccp_env))

    async def dismiss(self, job: Job) -> None:
        """Kill a live job for real and wait until its processes are reaped and its outputs zipped."""
        if not job.terminal:
            job.dismiss_requested = True
            _kill(job)
            if job.task is not None:
                await asyncio.shield(job.task)
            else:
                await _archive(job)
        job.set_status(DISMISSED, "Dismissed by the user")

    def kill_all(self) -> None:
        """Safe to call from any thread: it only sends signals."""
        for job in self._jobs:
            if not job.terminal:
                _kill(job)

    async def _run(self, job: Job, ccp_env: Mapping[str, str]) -> None:
        if self._launch_seconds:
            await asyncio.sleep(self._launch_seconds)
        job.set_status(RUNNING, "Execution running", 0)
        for number in range(1, job.plan.replicas + 1):
            if job.dismiss_requested:
                break
            job.replicas.append(Replica(number, await _spawn(job.data_dir, number, ccp_env)))
        if job.dismiss_requested:
            _kill(job)
        status, message = await self._supervise(job)
        # Stray background processes die with the job, as they would with CCP's container.
        _kill(job, include_finished=True)
        await _archive(job)
        if not job.dismiss_requested:
            job.set_status(status, message, 100)

    async def _supervise(self, job: Job) -> tuple[str, str]:
        async def wait(replica: Replica) -> None:
            await replica.process.wait()
            job.progress = min(99, job.progress + 100 // job.plan.replicas)

        try:
            await asyncio.wait_for(asyncio.gather(*(wait(r) for r in job.replicas)), job.plan.max_seconds)
        except TimeoutError:
            _kill(job)
            await asyncio.gather(*(r.process.wait() for r in job.replicas))
            return FAILED, f"Execution exceeded ccpmaxtime ({job.plan.max_seconds:g} s) and was killed"
        return _outcome(job)


async def _spawn(data_dir: Path, number: int, ccp_env: Mapping[str, str]) -> asyncio.subprocess.Process:
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    env |= {"HOME": str(data_dir), **ccp_env, "ccptaskid": str(number)}
    stdout, stderr = _log_files(data_dir, number)
    try:
        return await asyncio.create_subprocess_exec(
            "bash",
            ENTRYPOINT,
            cwd=data_dir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    finally:
        stdout.close()
        stderr.close()


def _log_files(data_dir: Path, number: int) -> tuple[BinaryIO, BinaryIO]:
    """The replica writes straight into these; the sandbox keeps no pipe open."""
    return open(data_dir / f"stdout.{number}.txt", "wb"), open(data_dir / f"stderr.{number}.txt", "wb")


def _outcome(job: Job) -> tuple[str, str]:
    for replica in job.replicas:
        code = replica.process.returncode
        if code != 0:
            prefix = f"replica {replica.number}: " if job.plan.replicas > 1 else ""
            reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            last_line = _last_line(job.data_dir / f"stderr.{replica.number}.txt")
            return FAILED, f"{prefix}{reason}" + (f": {last_line}" if last_line else "")
    return SUCCESSFUL, "Execution completed"


def _last_line(path: Path) -> str:
    with open(path, "rb") as stream:
        stream.seek(max(0, path.stat().st_size - 4096))
        lines = stream.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _kill(job: Job, *, include_finished: bool = False) -> None:
    for replica in job.replicas:
        if replica.process.returncode is None or include_finished:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(replica.process.pid, signal.SIGKILL)


async def _archive(job: Job) -> None:
    await asyncio.to_thread(build_zip, job.data_dir, job.archive, job.log_not_requested)
