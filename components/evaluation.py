"""Evaluation: metrics on the golden set and the promotion decision.

Every metric comes with the number of samples it was computed on; a metric with no samples
is NaN, and a NaN or missing metric fails its gate.

    >>> decide_promotion({"key_fact_accuracy": 0.5}, {"key_fact_accuracy": 0.3})
    Decision(passed=True, reasons=['key_fact_accuracy 0.500 >= 0.300'])
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from statistics import mean

from components.prompting import extract_citations

REFUSAL_MARKERS = ("do not contain", "don't contain", "does not contain", "doesn't contain", "don't know", "do not know",
                   "not sure", "cannot find", "can't find", "no information", "not have that information",
                   "does not mention", "doesn't mention", "not mentioned", "only help with")


@dataclass(frozen=True)
class Metric:
    value: float
    samples: int


@dataclass(frozen=True)
class PairedDelta:
    """Mean of (a - b) over paired samples, with a paired-bootstrap 95% confidence interval."""

    value: float
    low: float
    high: float
    samples: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Decision:
    passed: bool
    reasons: list[str] = field(default_factory=list)


def _metric(values: list[float]) -> Metric:
    return Metric(float(mean(values)) if values else float("nan"), len(values))


def normalize_fact(text: str) -> str:
    return re.sub(r"(?<=\d),(?=\d{3})", "", text.lower()).strip()


def contains_fact(answer: str, fact: str) -> bool:
    """A key fact counts when it appears as a whole token (so '14' does not match '149.99')."""
    pattern = rf"(?<![\w.]){re.escape(normalize_fact(fact))}(?![\w]|\.\d)"
    return re.search(pattern, normalize_fact(answer)) is not None


def is_refusal(answer: str) -> bool:
    lowered = answer.lower().replace("’", "'")
    return any(marker in lowered for marker in REFUSAL_MARKERS)


def retrieval_metrics(golden: list[dict], retrieved_ids: list[list[str]], mode: str = "hybrid") -> dict[str, Metric]:
    """recall@k and MRR over the questions that have gold documents. The serving mode (hybrid)
    gives the gated names; other modes (vector, bm25) are suffixed, for the side-by-side view."""
    recalls, reciprocal_ranks = [], []
    for row, ids in zip(golden, retrieved_ids, strict=True):
        gold = set(row.get("gold_doc_ids") or [])
        if not gold:
            continue
        recalls.append(len(gold & set(ids)) / len(gold))
        rank = next((i for i, doc_id in enumerate(ids, start=1) if doc_id in gold), None)
        reciprocal_ranks.append(1.0 / rank if rank else 0.0)
    suffix = "" if mode == "hybrid" else f"_{mode}"
    return {f"retrieval_recall_at_k{suffix}": _metric(recalls), f"retrieval_mrr{suffix}": _metric(reciprocal_ranks)}


def router_metrics(golden: list[dict], routes: list[str]) -> dict[str, Metric]:
    pairs = [(row["intent"], route) for row, route in zip(golden, routes, strict=True) if row.get("intent")]
    intents = sorted({t for t, _ in pairs})
    f1s = []
    for intent in intents:
        tp = sum(t == intent and p == intent for t, p in pairs)
        fp = sum(t != intent and p == intent for t, p in pairs)
        fn = sum(t == intent and p != intent for t, p in pairs)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"router_accuracy": _metric([float(t == p) for t, p in pairs]),
            "router_macro_f1": Metric(float(mean(f1s)) if f1s else float("nan"), len(pairs))}


def answer_metrics(golden: list[dict], answers: list[str]) -> dict[str, Metric]:
    """Key-fact accuracy, citation precision and refusal accuracy of generated answers."""
    facts, precision, refusals = [], [], []
    for row, answer in zip(golden, answers, strict=True):
        if row.get("answerable") and row.get("key_facts"):
            facts.append(float(all(contains_fact(answer, f) for f in row["key_facts"])))
        cited = extract_citations(answer)
        if row.get("gold_doc_ids") and cited:
            precision.append(len(set(cited) & set(row["gold_doc_ids"])) / len(cited))
        if not row.get("answerable") and row.get("intent") in ("catalog", "policy"):
            refusals.append(float(is_refusal(answer)))
    return {"key_fact_accuracy": _metric(facts), "citation_precision": _metric(precision),
            "refusal_accuracy": _metric(refusals)}


def generator_behaviour_outcomes(examples: list[dict], answers: list[str]) -> dict[str, list[float]]:
    """Per-example outcomes (1.0 or 0.0) of a generator on RAG examples with known answers, given
    their fixed context: citation accuracy (answerable: cites exactly the documents the reference
    answer cites), refusal rate (unanswerable: says the documents do not contain it) and
    false-refusal rate (answerable: refuses although the answer is in the context). Which examples
    count for a metric depends only on the examples, so two generators' outcomes pair up."""
    outcomes: dict[str, list[float]] = {"citation_accuracy": [], "refusal_rate": [], "false_refusal_rate": []}
    for example, answer in zip(examples, answers, strict=True):
        if example.get("answerable", True):
            expected = set(extract_citations(example["answer"]))
            if expected:
                outcomes["citation_accuracy"].append(float(set(extract_citations(answer)) == expected))
            outcomes["false_refusal_rate"].append(float(is_refusal(answer)))
        else:
            outcomes["refusal_rate"].append(float(is_refusal(answer)))
    return outcomes


@dataclass(frozen=True)
class BehaviourComparison:
    """A fine-tuned generator against its base model on the same examples and context."""

    tuned: dict[str, Metric]
    base: dict[str, Metric]
    delta: dict[str, PairedDelta]  # tuned - base, per metric

    def as_metrics(self) -> dict[str, float]:
        """Flat `heldout_<metric>_<tuned|base|delta|delta_low|delta_high|samples>` values for MLflow."""
        flat = {}
        for name, delta in self.delta.items():
            flat.update({f"heldout_{name}_tuned": self.tuned[name].value, f"heldout_{name}_base": self.base[name].value,
                         f"heldout_{name}_delta": delta.value, f"heldout_{name}_delta_low": delta.low,
                         f"heldout_{name}_delta_high": delta.high, f"heldout_{name}_samples": float(delta.samples)})
        return flat


def compare_behaviour(examples: list[dict], tuned_answers: list[str], base_answers: list[str],
                      seed: int = 0) -> BehaviourComparison:
    tuned = generator_behaviour_outcomes(examples, tuned_answers)
    base = generator_behaviour_outcomes(examples, base_answers)
    return BehaviourComparison({k: _metric(v) for k, v in tuned.items()}, {k: _metric(v) for k, v in base.items()},
                               {k: paired_bootstrap_delta(tuned[k], base[k], seed=seed) for k in tuned})


def paired_bootstrap_delta(a: list[float], b: list[float], resamples: int = 2000, seed: int = 0) -> PairedDelta:
    """mean(a) - mean(b) on the same samples, and the 2.5/97.5 percentiles of that difference over
    `resamples` bootstrap resamples of the pairs. NaN (no interval) without samples."""
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal length, got {len(a)} and {len(b)}")
    if not a:
        return PairedDelta(float("nan"), float("nan"), float("nan"), 0)
    diffs = [x - y for x, y in zip(a, b)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return PairedDelta(mean(diffs), means[int(0.025 * (resamples - 1))], means[int(0.975 * (resamples - 1))], n)


def decide_promotion(metrics: dict[str, float], gates: dict[str, float]) -> Decision:
    """Pass only when every gated metric exists, is a number, and meets its minimum."""
    reasons, passed = [], True
    for name, minimum in gates.items():
        value = metrics.get(name)
        if value is None or math.isnan(value):
            passed = False
            reasons.append(f"{name} is missing or NaN (gate >= {minimum:.3f})")
        elif value < minimum:
            passed = False
            reasons.append(f"{name} {value:.3f} < {minimum:.3f}")
        else:
            reasons.append(f"{name} {value:.3f} >= {minimum:.3f}")
    return Decision(passed, reasons)
