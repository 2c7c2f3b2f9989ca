"""CCP's execution records read whatever their shape (no network)."""

from __future__ import annotations

from airflow_provider_ccp.execution_records import record_status


def test_a_record_without_a_status_reads_as_unknown():
    status = record_status({"id": "j1"})
    assert (status.job_id, status.status, status.process_id) == ("j1", "unknown", None)
