"""The exchange both hooks drive, with no I/O: retry policy, steps of one request, redirects and origins."""

from __future__ import annotations

import pendulum
import pytest

from airflow_provider_ccp import exchange, retries
from airflow_provider_ccp.exceptions import CCPProtocolError, CCPTrustError

BASE = "https://ccp.example.org"


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"), [(None, None), ("", None), ("2", 2.0), (" 7 ", 7.0), ("9999", 60.0), ("-3", 0.0)]
    )
    def test_retry_after_seconds(self, value, expected):
        assert retries.retry_after_seconds(value, cap=60.0) == expected

    def test_retry_after_http_date(self):
        date = pendulum.now("UTC").add(seconds=30).format("ddd, DD MMM YYYY HH:mm:ss [GMT]")
        assert 25 <= retries.retry_after_seconds(date, cap=60.0) <= 30
        assert retries.retry_after_seconds("not a date", cap=60.0) is None


class TestRetryPolicy:
    """The one retry policy of both hooks: which answers are retried, how long to wait, when to stop."""

    policy = retries.RetryPolicy(limit=3, delay=1.0, delay_max=3.0, retry_after_cap=10.0, total_seconds=20.0)

    def wait(self, answer: exchange.Answer, retry: int = 1, elapsed: float = 0.0, *, idempotent: bool = True):
        return self.policy.wait(retry, elapsed, answer, idempotent=idempotent)

    @pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
    def test_retryable_statuses_of_idempotent_requests_are_retried(self, status):
        assert 1.0 <= self.wait(exchange.Answer(status)) <= 2.0

    @pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 409, 501])
    def test_other_statuses_are_final(self, status):
        assert self.wait(exchange.Answer(status)) is None

    def test_a_request_that_is_not_idempotent_is_never_resent_once_it_may_have_left(self):
        assert self.wait(exchange.Answer(503), idempotent=False) is None
        assert self.wait(exchange.Answer(None, sent=True), idempotent=False) is None
        # Refused or unresolvable: nothing reached the server, so sending again cannot duplicate anything.
        assert self.wait(exchange.Answer(None, sent=False), idempotent=False) is not None

    def test_backoff_doubles_up_to_its_maximum_plus_jitter(self):
        assert self.policy.backoff(1, rng=lambda: 0.0) == 1.0
        assert self.policy.backoff(2, rng=lambda: 0.0) == 2.0
        assert self.policy.backoff(3, rng=lambda: 0.0) == 3.0
        assert self.policy.backoff(9, rng=lambda: 0.999) == pytest.approx(3.999)

    @pytest.mark.parametrize(("header", "expected"), [("4", 4.0), ("0.5", 0.5), ("600", 10.0), ("-1", 0.0)])
    def test_retry_after_replaces_the_backoff_and_is_capped(self, header, expected):
        assert self.wait(exchange.Answer(503, retry_after=header)) == expected

    def test_the_retry_count_and_the_total_time_bound_it(self):
        assert self.wait(exchange.Answer(503), retry=3) is not None
        assert self.wait(exchange.Answer(503), retry=4) is None
        assert self.wait(exchange.Answer(503, retry_after="5"), elapsed=15.0) == 5.0
        assert self.wait(exchange.Answer(503, retry_after="6"), elapsed=15.0) is None

    def test_bad_arguments_are_refused(self):
        with pytest.raises(ValueError, match="retry_limit must be >= 0"):
            retries.RetryPolicy(limit=-1)


URL = f"{BASE}/jobs/j1"


class TestExchange:
    """The request decisions both hooks share: token, send, retry waits, one renewal on 401."""

    @staticmethod
    def run(flow, answers, token="t1", renewed="t2"):
        """Drive ``flow`` like a hook would; returns the steps it asked for and its final answer."""
        steps, tokens, replies = [], iter([token, renewed]), iter(answers)
        try:
            step = next(flow)
            while True:
                steps.append(type(step).__name__ + (f"({step.token})" if isinstance(step, exchange.Send) else ""))
                if isinstance(step, exchange.Send) and step.url != URL:
                    steps[-1] += f" to {step.url}"
                reply = None
                if isinstance(step, exchange.NeedToken):
                    reply = next(tokens)
                elif isinstance(step, exchange.Send):
                    reply = next(replies)
                step = flow.send(reply)
        except StopIteration as done:
            return steps, done.value

    def exchange(self, method="GET", **kwargs):
        return exchange.exchange(retries.RetryPolicy(limit=2, delay=0.0), method, URL, lambda: 0.0, **kwargs)

    def test_a_get_follows_a_redirect_on_its_origin(self):
        moved = exchange.Answer(307, location="/jobs/j2")
        steps, final = self.run(self.exchange(), [moved, exchange.Answer(200)])
        assert steps == ["NeedToken", "Send(t1)", f"Send(t1) to {BASE}/jobs/j2"]
        assert final.status == 200

    def test_redirects_are_bounded(self):
        moved = exchange.Answer(302, location=f"{BASE}/jobs/j1")
        with pytest.raises(CCPTrustError, match=r"more than 5 redirects"):
            self.run(self.exchange(), [moved] * 7)

    @pytest.mark.parametrize(
        ("method", "location", "why"),
        [
            ("POST", "/processes/m/execution2", "only GET requests are redirected"),
            ("DELETE", "/jobs/j2", "only GET requests are redirected"),
            ("GET", "https://other.example.org/jobs/j1", "only GET requests are redirected, and only on"),
            ("GET", "http://ccp.example.org/jobs/j1", "only GET requests are redirected, and only on"),
        ],
    )
    def test_other_redirects_are_refused_before_anything_is_sent(self, method, location, why):
        moved = exchange.Answer(308, location=location)
        flow = self.exchange(method)
        with pytest.raises(CCPTrustError) as raised:
            self.run(flow, [moved])  # a second Send would need a second answer: there is none
        assert why in str(raised.value)
        assert f"Refused the redirect (HTTP 308) of {method} {URL}" in str(raised.value)

    def test_a_redirect_without_location_is_a_protocol_error(self):
        with pytest.raises(CCPProtocolError, match=r"HTTP 301 from .* without a Location header"):
            self.run(self.exchange(), [exchange.Answer(301)])

    def test_a_401_renews_the_token_once_and_resends(self):
        steps, final = self.run(self.exchange(), [exchange.Answer(401), exchange.Answer(200)])
        assert steps == ["NeedToken", "Send(t1)", "Renew", "NeedToken", "Send(t2)"]
        assert final.status == 200

    def test_a_second_401_is_final(self):
        steps, final = self.run(self.exchange(), [exchange.Answer(401), exchange.Answer(401)])
        assert steps == ["NeedToken", "Send(t1)", "Renew", "NeedToken", "Send(t2)"]
        assert final.status == 401

    def test_retries_then_the_last_answer(self):
        steps, final = self.run(self.exchange(), [exchange.Answer(503)] * 3)
        assert steps == ["NeedToken", "Send(t1)", "Sleep", "Send(t1)", "Sleep", "Send(t1)"]
        assert final.status == 503

    def test_an_execution_post_is_sent_once(self):
        steps, _final = self.run(self.exchange("POST"), [exchange.Answer(503)])
        assert steps == ["NeedToken", "Send(t1)"]

    def test_token_requests_carry_no_token_and_are_retried(self):
        flow = self.exchange("POST", authenticated=False, idempotent=True)
        steps, final = self.run(flow, [exchange.Answer(None, sent=True), exchange.Answer(200)])
        assert steps == ["Send(None)", "Sleep", "Send(None)"]
        assert final.status == 200
