"""CCP's execution list (``GET /executions``) as ``list_executions`` reads it: every page, newest first,
filtered by Method, whatever shape a record has (CCP's is undocumented)."""

from __future__ import annotations

from airflow_provider_ccp.execution_records import record_status
from airflow_provider_ccp.hooks.ccp import CCPHook


def test_records_of_every_page_newest_first_and_of_one_method(make_conn, httpserver):
    conn = make_conn(auth_flow="none", login=None, secret="")
    page_2 = httpserver.url_for("/executions") + "?page=2"
    httpserver.expect_request("/executions", query_string="page=2").respond_with_json(
        [{"id": "newest", "method": "m1", "created": "2026-03-01T00:00:00Z", "status": "running"}]
    )
    httpserver.expect_request("/executions").respond_with_json(
        {
            "executions": [
                {
                    "id": "old",
                    "method": {"id": "m1"},
                    "status": {"status": "successful", "created": "2026-01-01T00:00Z"},
                },
                {"status": {"jobID": "undated", "processID": "m1", "status": "failed"}},
                {"id": "other", "method": {"id": "m2"}, "created": "2026-02-01T00:00:00Z"},
            ],
            "links": [{"rel": "next", "href": page_2}],
        }
    )

    records = CCPHook(conn).list_executions(method_id="m1")

    statuses = [record_status(record) for record in records]
    assert [(s.job_id, s.process_id, s.status) for s in statuses] == [
        ("newest", "m1", "running"),
        ("old", "m1", "successful"),
        ("undated", "m1", "failed"),
    ]
    assert [s.job_id for s in map(record_status, CCPHook(conn).list_executions())] == [
        "newest",
        "other",
        "old",
        "undated",
    ]
