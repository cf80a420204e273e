"""Evaluation: metrics on the golden set and the promotion decision.

Every metric comes with the number of samples it was computed on; a metric with no samples
is NaN, and a NaN or missing metric fails its gate.

    >>> decide_promotion({"key_fact_accuracy": 0.5}, {"key_fact_accuracy": 0.3})
    Decision(passed=True, reasons=['key_fact_accuracy 0.500 >= 0.300'])
"""

from __future__ import annotations

import math
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


def generator_behaviour_metrics(examples: list[dict], answers: list[str]) -> dict[str, Metric]:
    """How a generator behaves on RAG examples with known answers, given their fixed context:
    citation accuracy (answerable: cites exactly the documents the reference answer cites),
    refusal rate (unanswerable: says the documents do not contain it) and false-refusal rate
    (answerable: refuses although the answer is in the context)."""
    cites, refusals, false_refusals = [], [], []
    for example, answer in zip(examples, answers, strict=True):
        if example.get("answerable", True):
            expected = set(extract_citations(example["answer"]))
            if expected:
                cites.append(float(set(extract_citations(answer)) == expected))
            false_refusals.append(float(is_refusal(answer)))
        else:
            refusals.append(float(is_refusal(answer)))
    return {"citation_accuracy": _metric(cites), "refusal_rate": _metric(refusals),
            "false_refusal_rate": _metric(false_refusals)}


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
