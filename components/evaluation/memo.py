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

What is never reused: latency, which is a timing of this machine now (its questions are answered
live, evaluation/bundle.py `measure_latency`); the answerability check's scores and retrieval,
which are cheap and computed again. A record from another generator, base model, token limit,
device or engine never matches: those are in the key.

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
from collections import Counter
from dataclasses import dataclass, field

ARTIFACT = "evaluation/generations.json"  # logged with every evaluation run


@dataclass
class GenerationMemo:
    """`earlier`: key → answer, from the champion's evaluation (empty: everything is generated).
    `used` collects every answer this evaluation used, reused or new: what it logs for the next one."""

    earlier: dict[str, str]
    source: str = ""  # where `earlier` came from ("bundle v3's evaluation"), for the summary line
    used: dict[str, str] = field(default_factory=dict)
    reused: Counter = field(default_factory=Counter)  # part → answers taken from `earlier`
    generated: Counter = field(default_factory=Counter)  # part → answers generated

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

    def summary(self) -> str:
        """One line: how many answers were reused and what was generated, by part."""
        reused, generated = sum(self.reused.values()), sum(self.generated.values())
        parts = ", ".join(f"{part} {n}" for part, n in sorted(self.generated.items())) or "none"
        source = f" from {self.source}" if self.source else ""
        return (f"evaluation: {reused} of {reused + generated} answers reused{source} (same generator, same "
                f"conversation); generated {generated}: {parts}; latency measured live")

    def to_dict(self) -> dict:
        return {"answers": self.used}

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> GenerationMemo:
        return cls(dict(data.get("answers", {})), source)
