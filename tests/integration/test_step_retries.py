"""The steps' retry policy in real Prefect flow runs, as `configure_steps` builds it from
params.yaml's orchestration section: a transient failure (a refused connection) is retried, bad
input fails at once, and a step past its timeout is not retried."""

from __future__ import annotations

import time

import pytest
from prefect import flow

from components.config import OrchestrationConfig
from flows.steps import STAGES, configure_steps

pytestmark = pytest.mark.integration


def test_transient_failures_are_retried_and_others_are_not():
    attempts = {"flaky": 0, "bad": 0, "slow": 0}

    def flaky_service(ctx) -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ConnectionRefusedError("[Errno 111] Connection refused")  # what an unreachable server raises
        return "ok"

    def bad_input(ctx) -> None:
        attempts["bad"] += 1
        raise ValueError("documents.jsonl line 3: price must be a number")

    def too_slow(ctx) -> None:
        attempts["slow"] += 1
        time.sleep(5)

    # The pipeline's steps with three of their functions swapped for these: the retries, delays,
    # retry condition and per-step timeouts are the ones the flows get.
    config = OrchestrationConfig(retries=2, retry_delay_seconds=0, timeout_minutes={"evaluate": 1 / 60})
    steps = configure_steps(config, {**STAGES, "registered_models": (flaky_service, "load-registered-models"),
                                     "curate": (bad_input, "curate-and-version"), "evaluate": (too_slow, "evaluate-bundle")})

    @flow
    def pipeline() -> dict:
        return {"flaky": steps.registered_models(None), "bad": steps.curate(None, return_state=True),
                "slow": steps.evaluate(None, return_state=True)}

    result = pipeline()
    assert result["flaky"] == "ok" and attempts["flaky"] == 3
    assert result["bad"].is_failed() and attempts["bad"] == 1
    assert result["slow"].is_failed() and attempts["slow"] == 1
    assert "line 3" in str(result["bad"].result(raise_on_failure=False))
