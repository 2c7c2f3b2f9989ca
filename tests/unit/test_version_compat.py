"""The one place that knows Airflow lines apart: its flags and shims, on whichever line this venv runs."""

from __future__ import annotations

import secrets

import airflow
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_ccp import version_compat


def test_the_flags_follow_the_installed_airflow():
    major, minor = (int(part) for part in airflow.__version__.split(".")[:2])
    assert version_compat.get_base_airflow_version_tuple()[:2] == (major, minor)
    assert ((major, minor) >= (3, 3)) == version_compat.AIRFLOW_V_3_3_PLUS


def test_mask_secret_hides_a_secret_on_this_line():
    secret = f"sync-{secrets.token_hex(8)}"
    version_compat.mask_secret(secret)
    assert secret not in str(redact(f"before {secret} after"))


async def test_amask_secret_hides_a_secret_on_this_line():
    secret = f"async-{secrets.token_hex(8)}"
    await version_compat.amask_secret(secret)
    assert secret not in str(redact(f"before {secret} after"))
