"""The wire format, with no I/O: URLs, execute bodies, the status model and error mapping."""

from __future__ import annotations

import logging

import pendulum
import pytest

from airflow_provider_ccp import operations, protocol
from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPError,
    CCPInputError,
    CCPNotFoundError,
    CCPProtocolError,
    CCPTrustError,
)
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.version_compat import AirflowFailException

BASE = "https://ccp.example.org"


class TestUrls:
    def test_every_route(self):
        assert protocol.processes_url(BASE + "/") == f"{BASE}/processes"
        assert protocol.process_url(BASE, "m-1") == f"{BASE}/processes/m-1"
        assert protocol.execution_request_url(BASE, "m-1") == f"{BASE}/processes/m-1/execution"
        assert protocol.jobs_url(BASE) == f"{BASE}/jobs"
        assert protocol.job_url(BASE, "j-1") == f"{BASE}/jobs/j-1"
        assert protocol.job_results_url(BASE, "j-1") == f"{BASE}/jobs/j-1/results"
        assert protocol.executions_url(BASE) == f"{BASE}/executions"
        assert protocol.execution_url(BASE, "j-1") == f"{BASE}/executions/j-1"
        assert protocol.output_zip_url(BASE, "j-1") == f"{BASE}/executions/j-1/outputs/output.zip"

    def test_base_url_with_a_path_keeps_it(self):
        assert protocol.job_url("https://example.org/ccp/api/", "j") == "https://example.org/ccp/api/jobs/j"

    @pytest.mark.parametrize("hostile", ["../admin", "a/b", "x?y=1", "x#frag"])
    def test_an_id_cannot_add_path_levels_or_a_query(self, hostile):
        url = protocol.job_url(BASE, hostile)
        assert url.count("/") == BASE.count("/") + 2
        assert "?" not in url
        assert "#" not in url

    @pytest.mark.parametrize("unusable", ["", ".", ".."])
    @pytest.mark.parametrize(
        ("builder", "kind"),
        [
            (protocol.process_url, "Method id"),
            (protocol.execution_request_url, "Method id"),
            (protocol.job_url, "Job id"),
            (protocol.job_results_url, "Job id"),
            (protocol.execution_url, "Job id"),
            (protocol.output_zip_url, "Job id"),
        ],
    )
    def test_ids_that_name_another_resource_are_refused(self, builder, kind, unusable):
        with pytest.raises(CCPInputError, match=f"^{kind} '{unusable}' is not usable"):
            builder(BASE, unusable)

    def test_dotted_ids_that_stay_one_segment_are_kept(self):
        assert protocol.job_url(BASE, "...") == f"{BASE}/jobs/..."
        assert protocol.process_url(BASE, ".hidden") == f"{BASE}/processes/.hidden"

    def test_context_encoding_is_slash_as_percent_2f(self):
        assert protocol.encode_context("/a.b/C D/E") == "%2Fa.b%2FC%20D%2FE"

    @pytest.mark.parametrize(
        ("href", "expected"),
        [
            ("?page=2", f"{BASE}/processes?page=2"),
            ("/processes?page=2", f"{BASE}/processes?page=2"),
            (f"{BASE}:443/p?page=2", f"{BASE}:443/p?page=2"),  # the default port named: the same origin
        ],
    )
    def test_next_link_is_made_absolute(self, href, expected):
        document = {"links": [{"rel": "self", "href": "x"}, {"rel": "next", "href": href}]}
        assert protocol.next_link(document, f"{BASE}/processes?page=1") == expected

    @pytest.mark.parametrize(
        ("href", "shown"),
        [
            ("https://other.example.org/p?page=2", "https://other.example.org"),
            ("http://ccp.example.org/processes?page=2", "http://ccp.example.org"),  # another scheme
            ("https://ccp.example.org:8443/processes?page=2", "https://ccp.example.org:8443"),  # another port
            ("//other.example.org/p", "https://other.example.org"),  # scheme-relative
            ("https://u:pw@other.example.org/p", "https://other.example.org"),  # user info is never repeated
        ],
    )
    def test_a_next_link_to_another_origin_is_refused(self, href, shown):
        document = {"links": [{"rel": "next", "href": href}]}
        with pytest.raises(CCPTrustError) as raised:
            protocol.next_link(document, f"{BASE}/processes?page=1")
        message = str(raised.value)
        assert message == (
            f"Refused to follow the next page of a list to {shown}: the provider only follows URLs on "
            f"{BASE}, the origin it was configured with"
        )
        assert isinstance(raised.value, AirflowFailException)  # final: a retry would be refused the same way

    def test_no_next_link(self):
        assert protocol.next_link({"links": [{"rel": "prev", "href": "p"}, "junk"]}, BASE) is None
        assert protocol.next_link({}, BASE) is None


class TestExecuteBody:
    def test_values_go_out_as_strings(self):
        body = operations.execute_body(
            {"n": 3, "x": 1.5, "flag": True, "off": False, "s": "text", "many": ["a", 2], "obj": {"b": 1, "a": 2}},
            outputs=protocol.value_outputs(["stdout"]),
        )
        assert body == {
            "inputs": {
                "n": "3",
                "x": "1.5",
                "flag": "true",
                "off": "false",
                "s": "text",
                "many": "a,2",
                "obj": '{"a": 2, "b": 1}',
            },
            "outputs": {"stdout": {"transmissionMode": "value"}},
            "response": "raw",
        }

    def test_outputs_left_out_when_not_given(self):
        assert operations.execute_body({"ccpimage": "bash"}) == {"inputs": {"ccpimage": "bash"}, "response": "raw"}


class TestJobIdFromSubmission:
    @pytest.mark.parametrize("key", ["jobID", "jobId"])
    def test_from_body(self, key):
        assert operations.job_id_from_submission({key: "abc"}, "https://x/jobs/other") == "abc"

    @pytest.mark.parametrize(
        "location",
        [
            "https://ccp.example.org/jobs/abc",
            "/jobs/abc/",
            "https://ccp.example.org/jobs/abc?f=json",
            "https://ccp.example.org/jobs/abc/results",
            "https://ccp.example.org/ogc/jobs/abc",
        ],
    )
    def test_from_location(self, location):
        assert operations.job_id_from_submission({}, location) == "abc"
        assert operations.job_id_from_submission(None, location) == "abc"

    def test_never_from_another_field(self):
        """A process description's or a results document's ``id`` names no job."""
        assert operations.job_id_from_submission({"id": "word-count", "status": "x"}, None) is None
        assert operations.job_id_from_submission({"id": "word-count"}, "https://x/jobs/j-7") == "j-7"


class TestReadSubmission:
    def test_a_status_info_answer(self):
        info = operations.read_submission(201, b'{"jobID": "j1", "status": "accepted"}', None, "application/json")
        assert (info.job_id, info.status) == ("j1", "accepted")

    def test_a_bare_201_with_a_location_has_no_status_yet(self):
        info = operations.read_submission(201, b"", "https://x/jobs/j2", None)
        assert isinstance(info, protocol.StatusInfo)
        assert (info.job_id, info.status) == ("j2", "")

    def test_a_200_results_document_is_a_sync_answer_not_a_job_named_after_the_process(self):
        body = b'{"id": "word-count", "count": {"value": 3}}'
        answer = operations.read_submission(200, body, None, "application/json; charset=utf-8")
        assert answer == protocol.SyncResults(body, "application/json")
        assert answer.file_name == "results.json"

    @pytest.mark.parametrize(
        ("body", "media", "shown"),
        [
            (b"", "application/json", "an empty body"),
            (b"", None, "an empty body"),
            (b"<html><form>Sign in</form></html>", "text/html; charset=utf-8", "33 bytes of text/html"),
            (b"3\n", "text/plain", "2 bytes of text/plain"),
            (b'["a", "b"]', "application/json", "10 bytes of application/json"),  # JSON, but no results document
            (b'{"a": 1}', None, "8 bytes of an unnamed media type"),
        ],
    )
    def test_a_200_that_is_not_a_json_results_document_is_no_run(self, body, media, shown):
        # A proxy's login page answered with 200 would otherwise be taken for the Method's results.
        with pytest.raises(CCPProtocolError) as raised:
            operations.read_submission(200, body, None, media)
        assert str(raised.value) == (
            f"The execution POST was answered HTTP 200 with {shown}: neither a job (statusInfo or Location) "
            "nor a JSON results document, so nothing says the Method ran"
        )

    def test_a_200_results_document_of_a_json_media_type(self):
        answer = operations.read_submission(200, b'{"sum": 5}', None, "application/geo+json")
        assert answer == protocol.SyncResults(b'{"sum": 5}', "application/geo+json")
        assert answer.file_name == "results.json"

    @pytest.mark.parametrize("status", [201, 202])
    def test_an_accepted_answer_naming_no_job(self, status):
        with pytest.raises(CCPProtocolError, match=rf"HTTP {status}\) but the answer names no job"):
            operations.read_submission(status, b'{"id": "word-count", "status": "accepted"}', None, "application/json")


class TestStatusModel:
    @pytest.mark.parametrize("word", ["successful", "SUCCESSFUL", " Successful "])
    def test_success(self, word):
        assert protocol.is_success(word)
        assert protocol.is_terminal(word)
        assert not protocol.is_failure(word)

    @pytest.mark.parametrize("word", ["failed", "dismissed", "cancelled", "expired", "FAILED", "Cancelled", "EXPIRED"])
    def test_terminal_failures(self, word):
        assert protocol.is_failure(word)
        assert protocol.is_terminal(word)
        assert not protocol.is_success(word)

    @pytest.mark.parametrize("word", ["accepted", "running", "Running", "ACCEPTED"])
    def test_not_finished(self, word, caplog):
        with caplog.at_level(logging.WARNING, logger="airflow_provider_ccp.protocol"):
            assert not protocol.is_terminal(word)
        assert not protocol.is_success(word)
        assert not protocol.is_failure(word)
        assert caplog.records == []

    def test_an_unknown_word_is_not_terminal_and_reading_it_logs_nothing(self, caplog):
        """The module keeps no state: warning about a word is the watch's job (tests/unit/test_trigger.py)."""
        with caplog.at_level(logging.DEBUG, logger="airflow_provider_ccp"):
            for _ in range(3):
                assert not protocol.is_terminal("EXECUTING")
        assert not protocol.is_known("executing")
        assert protocol.is_known("Running")
        assert caplog.records == []

    def test_status_info_parses_every_field(self):
        status = StatusInfo.from_json(
            {
                "jobID": "j-1",
                "status": "Successful",
                "message": "Runtime removed",
                "processID": "m-1",
                "progress": 100.0,
                "created": "2024-05-01T10:00:00Z",
                "started": "2024-05-01T10:00:05Z",
                "finished": "2024-05-01T10:01:05+00:00",
                "updated": "2024-05-01T10:01:06Z",
                "links": [{"rel": "prov", "href": "http://registry:8080/executions/j-1"}, "not a link"],
            }
        )
        assert status.job_id == "j-1"
        assert status.status == "successful"
        assert status.successful
        assert status.terminal
        assert not status.failed
        assert status.message == "Runtime removed"
        assert status.process_id == "m-1"
        assert status.progress == 100
        assert status.created == pendulum.datetime(2024, 5, 1, 10, 0, 0)
        assert status.started == pendulum.datetime(2024, 5, 1, 10, 0, 5)
        assert status.finished == pendulum.datetime(2024, 5, 1, 10, 1, 5)
        assert status.updated == pendulum.datetime(2024, 5, 1, 10, 1, 6)
        assert status.links == ({"rel": "prov", "href": "http://registry:8080/executions/j-1"},)
        assert status.duration_seconds == 60.0
        assert status.to_dict() == {
            "job_id": "j-1",
            "status": "successful",
            "message": "Runtime removed",
            "process_id": "m-1",
            "progress": 100,
            "created": "2024-05-01T10:00:00+00:00",
            "started": "2024-05-01T10:00:05+00:00",
            "finished": "2024-05-01T10:01:05+00:00",
            "updated": "2024-05-01T10:01:06+00:00",
            "duration_seconds": 60.0,
        }

    def test_ccp_documented_example_without_finished_or_progress(self):
        # The jobStatus example of CCP's docs (ccp-api.md §3.3): no finished, no progress.
        status = StatusInfo.from_json(
            {
                "jobID": "5c8d",
                "status": "running",
                "message": "Started",
                "created": "2024-05-01T10:00:00Z",
                "started": "2024-05-01T10:00:05Z",
                "updated": "2024-05-01T10:00:30Z",
            }
        )
        assert status.finished is None
        assert status.progress is None
        assert not status.terminal
        # While running, "updated" is not an end: no duration yet.
        assert status.duration_seconds is None

    def test_unparsable_timestamps_become_none(self):
        status = StatusInfo.from_json(
            {"jobID": "j", "status": "failed", "created": "not a date", "updated": "2024-13-45T99:00:00Z"}
        )
        assert status.created is None
        assert status.updated is None
        assert status.failed

    @pytest.mark.parametrize("key", ["jobId", "id"])
    def test_other_job_id_spellings(self, key):
        assert StatusInfo.from_json({key: "j", "status": "accepted"}).job_id == "j"

    @pytest.mark.parametrize("body", [{"status": "running"}, {"jobID": "j"}, ["jobID"], "text", None])
    def test_not_a_status_info(self, body):
        with pytest.raises(CCPProtocolError):
            StatusInfo.from_json(body)


class TestErrors:
    def test_ogc_exception_body_is_read(self):
        body = (
            b'{"type": "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-process",'
            b' "title": "No such process", "detail": "Method m-9 is not visible in this context"}'
        )
        error = protocol.error_from_response(404, "Not Found", body, url=f"{BASE}/processes/m-9", method_id="m-9")
        assert isinstance(error, CCPNotFoundError)
        assert error.http_status == 404
        assert error.method_id == "m-9"
        assert error.url == f"{BASE}/processes/m-9"
        assert error.error_type == "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-process"
        assert error.title == "No such process"
        assert error.detail == "Method m-9 is not visible in this context"
        # One line, the server's reason first, then where: logs and the UI's failure summary show the first line.
        assert str(error) == (
            "No such process; Method m-9 is not visible in this context (HTTP 404 Not Found) "
            f"from {BASE}/processes/m-9 (Method 'm-9')"
        )

    def test_the_first_line_is_the_reason_even_when_the_server_writes_several(self):
        body = b'{"title": "Bad input", "detail": "Input \'ccpreplicas\' must be\\n an integer"}'
        url = f"{BASE}/processes/m/execution"
        error = protocol.error_from_response(400, "Bad Request", body, url=url, method_id="m", job_id="j")
        assert str(error) == (
            f"Bad input; Input 'ccpreplicas' must be an integer (HTTP 400 Bad Request) from {url} (Method 'm', job 'j')"
        )

    @pytest.mark.parametrize("body", [b"", b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"[1, 2]", b"{"])
    def test_non_ogc_body_is_reported_by_status_line(self, body):
        error = protocol.error_from_response(502, "Bad Gateway", body, url=f"{BASE}/jobs/j", job_id="j")
        assert type(error) is CCPError
        assert str(error) == f"HTTP 502 Bad Gateway from {BASE}/jobs/j (job 'j')"
        assert error.error_type is None
        assert error.title is None
        assert error.detail is None
        assert error.__context__ is None

    @pytest.mark.parametrize(("status", "cls"), [(401, CCPAuthError), (403, CCPAuthError), (500, CCPError)])
    def test_classes(self, status, cls):
        assert type(protocol.error_from_response(status, "", b"", url=BASE)) is cls

    def test_decode_json_error_is_a_protocol_error(self):
        with pytest.raises(CCPProtocolError, match="Expected JSON from u") as raised:
            protocol.decode_json(b"<html>", url="u")
        assert raised.value.__cause__ is None


class TestStatusInfoTimestamps:
    def test_parsed_only_when_read(self, mocker):
        parse = mocker.spy(pendulum, "parse")
        info = StatusInfo.from_json({"jobID": "j", "status": "running", "created": "2026-01-01T10:00:00Z"})
        assert info.status == "running"
        assert parse.call_count == 0
        assert info.created == pendulum.datetime(2026, 1, 1, 10)
        assert info.created is info.created
        assert parse.call_count == 1
