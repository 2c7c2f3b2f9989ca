"""CCP's execution records read whatever their shape (no network)."""

from __future__ import annotations

from airflow_provider_ccp.execution_records import newest_first, record_status


def test_a_record_without_a_status_reads_as_unknown():
    status = record_status({"id": "j1"})
    assert (status.job_id, status.status, status.process_id) == ("j1", "unknown", None)


def test_newest_first_keeps_the_listed_order_of_ties_and_of_undated_records():
    records = [
        {"id": "u1"},
        {"id": "a", "created": "2026-01-01T00:00:00Z"},
        {"id": "u2"},
        {"id": "b", "created": "2026-02-01T00:00:00Z"},
        {"id": "c", "created": "2026-01-01T00:00:00Z"},
    ]

    assert [record["id"] for record in newest_first(records)] == ["b", "a", "c", "u1", "u2"]
