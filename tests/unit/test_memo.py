"""The evaluation's memo of answers and single-request generation times (components/evaluation/memo.py)."""

from __future__ import annotations

import pytest

from components.evaluation.memo import GenerationMemo

pytestmark = pytest.mark.unit
CONVERSATION = [{"role": "user", "content": "How much is the kettle?"}]


def _latency(memo: GenerationMemo, key: str, answer: str) -> tuple[str, list[float], int]:
    """One timed answer: what came back, the generation times carried, how many times it generated."""
    calls = []
    with memo.measuring_latency() as carried:
        got = memo.timed(key, lambda: calls.append(1) or answer)
    return got, carried, len(calls)


def test_a_generation_time_is_reused_only_for_a_single_request_timed_on_this_machine():
    key = GenerationMemo.key("g|v1|48|cpu|ctranslate2", CONVERSATION)
    first = GenerationMemo({key: "It is 20 [p-001]."})  # generated in a batch earlier: no timing
    assert _latency(first, key, "It is 20 [p-001].") == ("It is 20 [p-001].", [], 1)
    record = first.to_dict()
    assert set(record["generation_ms"]) == {key}

    again = GenerationMemo.from_dict(record)  # the next evaluation on this machine
    ms = record["generation_ms"][key]
    assert _latency(again, key, "never generated") == ("It is 20 [p-001].", [ms], 0)
    assert (again.timings_reused, again.timings_measured) == (1, 0)
    assert again.to_dict()["generation_ms"] == {key: ms}  # carried on to the evaluation after

    elsewhere = GenerationMemo.from_dict({**record, "machine": "x86_64|another CPU|flags 0|64 cores"})
    assert _latency(elsewhere, key, "It is 20 [p-001].")[1:] == ([], 1)
    assert elsewhere.lookup(key, "golden") == "It is 20 [p-001]."  # its answers still count


def test_a_changed_conversation_is_generated_and_timed_now():
    key = GenerationMemo.key("g|v1|48|cpu|ctranslate2", CONVERSATION)
    memo = GenerationMemo.from_dict(GenerationMemo({key: "old"}, used_ms={key: 900.0}, used={key: "old"}).to_dict())
    changed = GenerationMemo.key("g|v1|48|cpu|ctranslate2", [{"role": "user", "content": "How much is the mug?"}])
    assert _latency(memo, changed, "new") == ("new", [], 1)
    assert "latency: 0 of 1 generation times reused" in memo.summary()
