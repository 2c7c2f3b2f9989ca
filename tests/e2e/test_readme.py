"""Every shell command the README shows, run exactly as written, as a new user pastes them.

The README's ```bash blocks are read from README.md at run time, so a changed line is run as it now
reads. A block that sources ``.airflow/env.sh`` runs in a new shell next to a running ``make airflow``
(its ``.airflow`` in a temporary folder, never the repository's); the others run in the repository, with
a throwaway venv first on PATH so that ``pip install`` lines install there. That venv sees the test
venv's packages (a ``.pth`` file), so installing needs the package registry only for build tools.
A block is left out only for a reason written in ``NOT_RUN``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.make_airflow import ROOT, Stack, make_airflow, new_shell_env, shell

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

#: The first command of each block that is not run, and why.
NOT_RUN = {
    "make demo": "`make demo` is the e2e quickstart run, and `make test` is this very suite",
    "export AIRFLOW_CONN_CCP_DEFAULT=": "a template for D4Science: its user and password are placeholders",
}
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def runs_against_the_stack(block: str) -> bool:
    return "source .airflow/env.sh" in block


def left_out(block: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if block.lstrip().startswith(start)), None)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def stack(base: Path) -> Iterator[Stack]:
    dags = base / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags_examples" / "ccp_quickstart.py", dags)
    with make_airflow(base / ".airflow", dags) as running:
        yield running


@pytest.fixture(scope="module")
def throwaway_venv(base: Path) -> Path:
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Airflow and the rest come from the test venv: pip finds them installed and downloads nothing.
    Path(purelib, "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_readme_shows_commands_and_says_why_any_is_not_run() -> None:
    blocks = readme_blocks()
    assert any(runs_against_the_stack(block) for block in blocks)
    assert any("pip install" in block for block in blocks)
    for start in NOT_RUN:
        assert any(block.lstrip().startswith(start) for block in blocks), f"NOT_RUN names a block gone: {start}"


def test_the_install_commands_work_as_written(throwaway_venv: Path) -> None:
    blocks = [b for b in readme_blocks() if not runs_against_the_stack(b) and not left_out(b)]
    env = new_shell_env(PATH=f"{throwaway_venv / 'bin'}:{new_shell_env()['PATH']}", VIRTUAL_ENV=str(throwaway_venv))
    for block in blocks:
        result = shell(block, ROOT, env)
        assert result.returncode == 0, f"{block}\n---\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    python = str(throwaway_venv / "bin" / "python")
    # The three distributions now live in the throwaway venv, each with its licence.
    where = (
        "import importlib.metadata as m, sys\n"
        "for name in ('airflow-provider-ccp', 'ccp-airflow', 'ccp-sandbox'):\n"
        "    d = m.distribution(name)\n"
        "    print(d.locate_file(''), any(str(f).endswith('LICENSE') for f in d.files or []))\n"
    )
    located = subprocess.run([python, "-c", where], capture_output=True, text=True, check=True).stdout.split("\n")
    for line in filter(None, located):
        folder, licensed = line.rsplit(" ", 1)
        assert Path(folder).is_relative_to(throwaway_venv), line
        assert licensed == "True", line


def test_the_commands_from_another_shell_work_as_written(stack: Stack, base: Path) -> None:
    (block,) = [b for b in readme_blocks() if runs_against_the_stack(b)]
    result = shell(block, base, new_shell_env(HOME=str(base)))
    assert result.returncode == 0, f"{block}\n---\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert "command not found" not in result.stderr
    assert "word-count" in result.stdout  # ccp-airflow methods list, through ccp_default
    assert "Connection success!" in result.stdout  # airflow connections test ccp_default
