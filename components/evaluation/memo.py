"""Answers generated once, reused by the next evaluation: what makes a reindex evaluation cost what changed.

With greedy decoding an answer is a function of the generator (its base model, its adapter, how
many tokens it may write, the device, the inference engine) and of the conversation it is given (system prompt, the
retrieved chunks' ids and text, the question). Every evaluation records each answer it generated
under a key of exactly those inputs and logs the record with its run. The next evaluation starts
from the champion's record: an answer whose key is in it is taken from it instead of generated
again. A reindex with the champion's models then generates only for questions whose retrieved
text changed, the freshness probes of the changed documents and red-team contexts that hold them;
a retrain reuses the base model's answers (the ablation's base arms, the general prompts), since
the base model did not change.

Latency is measured one question at a time, as a user asks: routing, retrieval, the answerability
check and the prompt are always timed now. Generating the answer is timed now too, unless the
champion's evaluation generated the same conversation with the same generator *as a single request
on this machine* (same CPU model, flags and core count): then its measured generation time is
taken (evaluation/bundle.py `measure_latency`). A timing from another machine, or an answer only
ever generated in a batch, is never reused. The answerability check's scores and retrieval are
cheap and computed again. A record from another generator, base model, token limit, device or
engine never matches: those are in the key.

Reused answers are the champion's own generations. Generated again, an answer can differ in rare
cases: a prompt is batched with others of similar length, and a different batch (other neighbours,
other padding) can change a float's last bits and so, seldom, a greedy token. The README says what
was measured: identical metrics and answers both ways for the tiny profile
(tests/e2e/test_incremental_evaluation.py), identical metrics of full and incremental evaluations
of the demo's real models.

    >>> memo = GenerationMemo({})
    >>> key = memo.key("models:/g/1|base|48|cpu", [{"role": "user", "content": "Hi"}])
    >>> memo.lookup(key, "golden") is None
    True
    >>> memo.record(key, "Hello!", "golden"); memo.lookup(key, "golden")
    'Hello!'
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ARTIFACT = "evaluation/generations.json"  # logged with every evaluation run


@cache
def machine_identity() -> str:
    """What a generation time depends on besides the generator and the conversation: the CPU model,
    its instruction set flags and the number of cores (timings from another machine are not reused)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    model = fields.get("model name", platform.processor())
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:12]
    return f"{platform.machine()}|{model}|flags {flags}|{os.cpu_count()} cores"


@dataclass
class GenerationMemo:
    """`earlier`: key → answer, from the champion's evaluation (empty: everything is generated).
    `used` collects every answer this evaluation used, reused or new: what it logs for the next one."""

    earlier: dict[str, str]
    source: str = ""  # where `earlier` came from ("bundle v3's evaluation"), for the summary line
    used: dict[str, str] = field(default_factory=dict)
    reused: Counter = field(default_factory=Counter)  # part → answers taken from `earlier`
    generated: Counter = field(default_factory=Counter)  # part → answers generated
    # key → milliseconds to generate that answer as a single request on `machine` (latency)
    earlier_ms: dict[str, float] = field(default_factory=dict)
    used_ms: dict[str, float] = field(default_factory=dict)
    machine: str = field(default_factory=machine_identity)
    timings_reused: int = 0
    timings_measured: int = 0
    carried: list[float] | None = None  # while measuring latency: the reused generation times

    @staticmethod
    def key(generator: str, conversation: list[dict]) -> str:
        """`generator`: what decides the answer besides the conversation (base model, adapter or
        none, max_new_tokens, device, engine)."""
        text = json.dumps([generator, conversation], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def lookup(self, key: str, part: str) -> str | None:
        """The answer for `key` if this evaluation already has it (counted once, where it was first
        needed) or the earlier one had it (counted as reused); None: it must be generated."""
        if key in self.used:
            return self.used[key]
        answer = self.earlier.get(key)
        if answer is not None:
            self.used[key] = answer
            self.reused[part] += 1
        return answer

    def record(self, key: str, answer: str, part: str) -> None:
        self.used[key] = answer
        self.generated[part] += 1

    @contextmanager
    def measuring_latency(self) -> Iterator[list[float]]:
        """Within it, answers go through `timed`; yields the generation times taken from the earlier
        record, to add to the wall time measured around the answer."""
        self.carried = []
        try:
            yield self.carried
        finally:
            self.carried = None

    def timed(self, key: str, generate: Callable[[], str]) -> str:
        """One answer as a single request (latency): the earlier record's answer, its generation
        time carried, when that record timed the same key on this machine; else generated now
        (its time is in the caller's wall time) and timed for the next evaluation."""
        ms, answer = self.earlier_ms.get(key), self.earlier.get(key)
        if ms is not None and answer is not None:
            self.carried.append(ms)
            self.used_ms[key] = ms
            self.used.setdefault(key, answer)
            self.timings_reused += 1
            return answer
        tic = time.perf_counter()
        answer = generate()
        self.used_ms[key] = (time.perf_counter() - tic) * 1000
        self.used.setdefault(key, answer)
        self.timings_measured += 1
        return answer

    def summary(self) -> str:
        """One line: how many answers were reused and what was generated, by part."""
        reused, generated = sum(self.reused.values()), sum(self.generated.values())
        parts = ", ".join(f"{part} {n}" for part, n in sorted(self.generated.items())) or "none"
        source = f" from {self.source}" if self.source else ""
        timings = self.timings_reused + self.timings_measured
        return (f"evaluation: {reused} of {reused + generated} answers reused{source} (same generator, same "
                f"conversation); generated {generated}: {parts}; latency: {self.timings_reused} of {timings} "
                f"generation times reused (same conversation, single request, this machine), the rest timed now")

    def to_dict(self) -> dict:
        return {"answers": self.used, "machine": self.machine, "generation_ms": self.used_ms}

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> GenerationMemo:
        memo = cls(dict(data.get("answers", {})), source)
        if data.get("machine") == memo.machine:  # timings of another machine say nothing of this one
            memo.earlier_ms = dict(data.get("generation_ms", {}))
        return memo
