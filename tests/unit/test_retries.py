"""The one transience rule: a wait takes its policy as an object, whoever waits."""

from __future__ import annotations

import logging

from airflow_provider_ccp.exceptions import CCPError, CCPNotFoundError
from airflow_provider_ccp.retries import DEFAULT_RETRY, RetryPolicy
from airflow_provider_ccp.waiting import EventStatus, JobWatch


def test_the_poll_backoff_doubles_per_failure_up_to_its_cap():
    policy = RetryPolicy(poll_backoff_max=10.0)
    assert [policy.poll_delay(2.0, failures) for failures in range(5)] == [2.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.poll_delay(60.0, 3) == 60.0  # never below the interval itself


def test_a_wait_follows_the_policy_it_is_given():
    watch = JobWatch("j", 1.0, None, logging.getLogger(__name__), policy=RetryPolicy(poll_failures=1))
    assert watch.on_error(CCPError("down", http_status=503)) is None
    event = watch.on_error(CCPError("down", http_status=503))
    assert event is not None
    assert event["status"] == EventStatus.ERROR
    assert "after 2 failed polls in a row" in event["message"]
    default = JobWatch("j", 1.0, None, logging.getLogger(__name__))
    assert [default.on_error(CCPError("down", http_status=503)) for _ in range(DEFAULT_RETRY.poll_failures)] == [
        None
    ] * DEFAULT_RETRY.poll_failures


def test_what_is_not_transient_ends_a_wait_at_once():
    watch = JobWatch("j", 1.0, None, logging.getLogger(__name__))
    event = watch.on_error(CCPNotFoundError("gone", http_status=404))
    assert event is not None
    assert event["status"] == EventStatus.ERROR
    assert watch.failures == 0
