"""The distributions ``make dist`` publishes: metadata a package index and Airflow read, built for real."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

import airflow_provider_ccp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


def _dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        (member,) = [n for n in zf.namelist() if n.endswith(f".dist-info/{name}")]
        return zf.read(member).decode()


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> Message:
    return Parser().parsestr(_dist_info(wheel, "METADATA"))


def test_the_version_is_written_once_in_the_package(wheel: Path, metadata: Message) -> None:
    assert metadata["Version"] == airflow_provider_ccp.__version__
    assert wheel.name.startswith(f"airflow_provider_ccp-{airflow_provider_ccp.__version__}-")


def test_the_metadata_an_index_shows(metadata: Message) -> None:
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["License-Expression"] == "Apache-2.0"
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    assert "Typing :: Typed" in classifiers
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Changelog", "Bug Tracker"} <= urls.keys()
    assert metadata.get_payload().startswith("# airflow-provider-ccp")  # the README, as the long description


def test_airflow_finds_the_provider_through_its_entry_point(wheel: Path) -> None:
    entry_points = _dist_info(wheel, "entry_points.txt")
    provider_info = "provider_info = airflow_provider_ccp.get_provider_info:get_provider_info"
    assert f"[apache_airflow_provider]\n{provider_info}" in entry_points


def test_the_wheel_is_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        assert "airflow_provider_ccp/py.typed" in zf.namelist()
