"""The CLI reconfigures logging for its process; in-process tests must hand the next test the setup they found."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

#: Loggers whose level Airflow's logging setup (called by the CLI) sets.
TOUCHED_LOGGERS = ("", "airflow", "httpx", "sqlalchemy.engine", "alembic.runtime.plugins")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    from airflow.sdk._shared.logging import structlog as airflow_structlog

    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in TOUCHED_LOGGERS}
    structlog_config = structlog.get_config()
    per_logger = dict(airflow_structlog.PER_LOGGER_LEVELS)
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.configure(**structlog_config)
    airflow_structlog.PER_LOGGER_LEVELS.clear()
    airflow_structlog.PER_LOGGER_LEVELS.update(per_logger)
