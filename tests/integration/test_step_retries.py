"""The steps' retry policy in real Prefect flow runs: a transient failure (a refused connection)
is retried, bad input fails at once, and a step past its timeout is not retried."""

from __future__ import annotations

import time

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.steps import retry_if_transient

pytestmark = pytest.mark.integration


def _policy(**options):
    return task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE,
                **options)


def test_transient_failures_are_retried_and_others_are_not():
    attempts = {"flaky": 0, "bad": 0, "slow": 0}

    @_policy()
    def flaky_service() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ConnectionRefusedError("[Errno 111] Connection refused")  # what an unreachable server raises
        return "ok"

    @_policy()
    def bad_input() -> None:
        attempts["bad"] += 1
        raise ValueError("documents.jsonl line 3: price must be a number")

    @_policy(timeout_seconds=1)
    def too_slow() -> None:
        attempts["slow"] += 1
        time.sleep(5)

    @flow
    def steps() -> dict:
        return {"flaky": flaky_service(), "bad": bad_input(return_state=True), "slow": too_slow(return_state=True)}

    result = steps()
    assert result["flaky"] == "ok" and attempts["flaky"] == 3
    assert result["bad"].is_failed() and attempts["bad"] == 1
    assert result["slow"].is_failed() and attempts["slow"] == 1
    assert "line 3" in str(result["bad"].result(raise_on_failure=False))
