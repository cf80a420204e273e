"""Limits of `ragops serve` (components/serving/limits.py): the per-key token bucket (429 with
Retry-After), the bounded queue for the model (503 with Retry-After) and the request timeout (503;
a request that times out before the model is free never reaches it); concurrent answers batched
(components/serving/batching.py). Over HTTP with the real
server: tests/e2e/test_serve.py."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from components.config import ServeConfig
from components.serving.batching import AnswerBatcher
from components.serving.limits import Admission, RateLimits, Refused

pytestmark = pytest.mark.unit


def test_each_key_gets_its_burst_then_its_rate_and_a_retry_after():
    now = [0.0]
    rates = RateLimits(ServeConfig(rate_limit_per_minute=60, rate_limit_burst=3), clock=lambda: now[0])
    for _ in range(3):
        rates.take("web")
    with pytest.raises(Refused) as refused:
        rates.take("web")
    assert refused.value.status == 429 and refused.value.retry_after == 1
    assert "serve.rate_limit_burst" in refused.value.message and "serve.rate_limit_per_minute" in refused.value.message
    rates.take("ops")  # another key has its own bucket
    now[0] = 1.0  # one second: one request more at 60 a minute, not two
    rates.take("web")
    with pytest.raises(Refused):
        rates.take("web")
    now[0] = 100.0  # refilled up to the burst only
    for _ in range(3):
        rates.take("web")
    with pytest.raises(Refused):
        rates.take("web")
    off = RateLimits(ServeConfig(rate_limit_per_minute=0), clock=lambda: now[0])
    for _ in range(1000):
        off.take("web")


def test_a_full_queue_is_refused_and_a_request_timed_out_before_the_model_never_reaches_it():
    admission = Admission(ServeConfig(max_waiting=1, request_timeout_seconds=0.5))
    model, gate, ran = threading.Lock(), threading.Event(), []

    def call(work):  # the holder's call: one request at a time on the model
        with model:
            return "1", work("assistant")

    def slow(assistant):
        gate.wait(10)
        ran.append("slow")
        return "done"

    async def scenario() -> list:
        first = asyncio.create_task(admission.run(call, slow))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(admission.run(call, lambda a: ran.append("second")))  # waits for the model
        await asyncio.sleep(0.1)
        refused = []
        for task in (admission.run(call, lambda a: ran.append("third")), first, second):
            try:
                await task
            except Refused as exc:
                refused.append(exc)
        return refused

    tic = time.monotonic()
    full, first, second = asyncio.run(scenario())
    assert time.monotonic() - tic < 2  # each told at its deadline, not when the model was done
    assert full.status == 503 and "1 requests are waiting for the model (serve.max_waiting 1)" in full.message
    assert full.retry_after >= 1
    for late in (first, second):
        assert late.status == 503 and "serve.request_timeout_seconds" in late.message
    gate.set()
    deadline = time.monotonic() + 10
    while admission.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert admission.pending == 0 and ran == ["slow"]  # the second never started on the model


def test_concurrent_answers_go_to_the_model_together_and_a_failure_reaches_each_of_them():
    config = ServeConfig(max_batch_size=4, batch_window_ms=20, max_waiting=2, request_timeout_seconds=5)
    model, calls = threading.Lock(), []

    def call(work):
        with model:
            return "7", work("assistant")

    def answer(assistant, items):
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("generator exploded")
        time.sleep(0.2)  # the model busy: the next requests gather meanwhile
        return items

    batcher = AnswerBatcher(config, Admission(config), call, answer, lambda version, items: [f"row {i}" for i in items])

    async def scenario() -> list:
        first = [asyncio.create_task(batcher.submit(f"q{i}")) for i in range(3)]  # within one window: one batch
        await asyncio.sleep(0.1)
        later = [asyncio.create_task(batcher.submit(f"r{i}")) for i in range(6)]  # while it is busy: 4 + 2
        results = await asyncio.gather(*first, *later)
        failed = await asyncio.gather(batcher.submit("boom"), batcher.submit("q9"), return_exceptions=True)
        return results + failed

    *answered, boom, neighbour = asyncio.run(scenario())
    assert answered == [("7", f"row q{i}") for i in range(3)] + [("7", f"row r{i}") for i in range(6)]
    assert batcher.batches[:3] == [3, 4, 2] and calls[:3] == [["q0", "q1", "q2"], ["r0", "r1", "r2", "r3"], ["r4", "r5"]]
    assert isinstance(boom, RuntimeError) and isinstance(neighbour, RuntimeError)  # the app answers each with a 500
