"""Evaluation metrics: retrieval, routing and answers on the golden set; generator behaviour.

Metrics are means of per-question outcomes (kept, so a challenger and the champion can be
compared question by question); every metric comes with the number of samples it was computed
on, and a metric with no samples is NaN (which fails its gate, components/evaluation/gates.py).

    >>> answer_metrics([{"id": "g-1", "answerable": True, "key_facts": ["5"]}], ["It is 5 USD."],
    ...                retrieval_intents=("catalog",))["key_fact_accuracy"]
    Metric(value=1.0, samples=1)
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from statistics import mean

from components.prompting import CITATION, extract_citations

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


def _metric(values: list[float]) -> Metric:
    return Metric(float(mean(values)) if values else float("nan"), len(values))


def normalize_fact(text: str) -> str:
    return re.sub(r"(?<=\d),(?=\d{3})", "", text.lower()).strip()


def contains_fact(answer: str, fact: str) -> bool:
    """A key fact counts when it appears as a whole token (so '14' does not match '149.99')."""
    pattern = rf"(?<![\w.]){re.escape(normalize_fact(fact))}(?![\w]|\.\d)"
    return re.search(pattern, normalize_fact(answer)) is not None


def _plain_lower(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


def is_refusal(answer: str, sentences: Sequence[str] = ()) -> bool:
    """The answer says it cannot answer: one of the usual phrasings (REFUSAL_MARKERS), or one of
    `sentences`, the domain's configured ones (`generator.refusal_reply`)."""
    lowered = _plain_lower(answer)
    return (any(marker in lowered for marker in REFUSAL_MARKERS)
            or any(_plain_lower(sentence).rstrip(".!") in lowered for sentence in sentences if sentence.strip()))


Outcomes = dict[str, dict[str, float]]  # metric → question id → that question's outcome


def _qid(row: dict, i: int) -> str:
    return str(row.get("id", i))


def aggregate(outcomes: Outcomes) -> dict[str, Metric]:
    """Each metric is the mean of its per-question outcomes, with their count as samples."""
    return {name: _metric(list(per_question.values())) for name, per_question in outcomes.items()}


def retrieval_outcomes(golden: list[dict], retrieved_ids: list[list[str]], mode: str = "hybrid") -> Outcomes:
    """recall@k and reciprocal rank per question that has gold documents. The serving mode (hybrid)
    gives the gated names; other modes (vector, bm25) are suffixed, for the side-by-side view."""
    suffix = "" if mode == "hybrid" else f"_{mode}"
    recall, rr = {}, {}
    for i, (row, ids) in enumerate(zip(golden, retrieved_ids, strict=True)):
        gold = set(row.get("gold_doc_ids") or [])
        if not gold:
            continue
        recall[_qid(row, i)] = len(gold & set(ids)) / len(gold)
        rank = next((n for n, doc_id in enumerate(ids, start=1) if doc_id in gold), None)
        rr[_qid(row, i)] = 1.0 / rank if rank else 0.0
    return {f"retrieval_recall_at_k{suffix}": recall, f"retrieval_mrr{suffix}": rr}


def retrieval_metrics(golden: list[dict], retrieved_ids: list[list[str]], mode: str = "hybrid") -> dict[str, Metric]:
    return aggregate(retrieval_outcomes(golden, retrieved_ids, mode))


def router_outcomes(golden: list[dict], routes: list[str]) -> Outcomes:
    return {"router_accuracy": {_qid(row, i): float(row["intent"] == route)
                                for i, (row, route) in enumerate(zip(golden, routes, strict=True)) if row.get("intent")}}


def router_metrics(golden: list[dict], routes: list[str]) -> dict[str, Metric]:
    """Accuracy, and macro-F1 over the intents the golden set holds (not per question: it has no
    per-question outcome, so it is gated absolutely but not compared with the champion)."""
    pairs = [(row["intent"], route) for row, route in zip(golden, routes, strict=True) if row.get("intent")]
    f1s = []
    for intent in sorted({t for t, _ in pairs}):
        tp = sum(t == intent and p == intent for t, p in pairs)
        fp = sum(t != intent and p == intent for t, p in pairs)
        fn = sum(t == intent and p != intent for t, p in pairs)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {**aggregate(router_outcomes(golden, routes)),
            "router_macro_f1": Metric(float(mean(f1s)) if f1s else float("nan"), len(pairs))}


NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w]|\.\d)")


def numbers_in(text: str) -> set[str]:
    """The numbers a text states (prices, stock, durations), citations like [p-012] left out."""
    return set(NUMBER.findall(normalize_fact(CITATION.sub(" ", text))))


def answer_outcomes(golden: list[dict], answers: list[str], contexts: list[list[str]] | None = None,
                    refusals: Sequence[str] = (), *, retrieval_intents: Collection[str]) -> Outcomes:
    """Per question: key facts all stated (answerable), cited documents that are gold (precision,
    answers that cite) and gold documents cited (recall, answerable), refusal (unanswerable
    questions of `retrieval_intents` refused) and false refusal (answerable ones refused: a model that always
    refuses fails this one, one that never refuses fails refusal_accuracy), and groundedness: the
    share of the answer's numbers that appear in the text it was given (`contexts`, per question;
    answers without numbers or context do not count). `refusals`: the configured refusal
    sentences, counted as refusals beside the usual phrasings."""
    outcomes: Outcomes = {"key_fact_accuracy": {}, "citation_precision": {}, "citation_recall": {},
                          "refusal_accuracy": {}, "false_refusal_rate": {}, "groundedness": {}}
    contexts = contexts if contexts is not None else [[] for _ in golden]
    for i, (row, answer, context) in enumerate(zip(golden, answers, contexts, strict=True)):
        qid, cited, gold = _qid(row, i), set(extract_citations(answer)), set(row.get("gold_doc_ids") or [])
        if row.get("answerable") and row.get("key_facts"):
            outcomes["key_fact_accuracy"][qid] = float(all(contains_fact(answer, f) for f in row["key_facts"]))
        if gold and cited:
            outcomes["citation_precision"][qid] = len(cited & gold) / len(cited)
        if gold and row.get("answerable"):
            outcomes["citation_recall"][qid] = len(cited & gold) / len(gold)
        if row.get("intent") in retrieval_intents:
            refusal = "false_refusal_rate" if row.get("answerable") else "refusal_accuracy"
            outcomes[refusal][qid] = float(is_refusal(answer, refusals))
        stated = numbers_in(answer)
        if stated and context and not is_refusal(answer, refusals):
            given = set().union(*(numbers_in(text) for text in context))
            outcomes["groundedness"][qid] = len(stated & given) / len(stated)
    return outcomes


def answer_metrics(golden: list[dict], answers: list[str], contexts: list[list[str]] | None = None,
                   refusals: Sequence[str] = (), *, retrieval_intents: Collection[str]) -> dict[str, Metric]:
    return aggregate(answer_outcomes(golden, answers, contexts, refusals, retrieval_intents=retrieval_intents))


def generator_behaviour_outcomes(examples: list[dict], answers: list[str],
                                 refusals: Sequence[str] = ()) -> dict[str, list[float]]:
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
            outcomes["false_refusal_rate"].append(float(is_refusal(answer, refusals)))
        else:
            outcomes["refusal_rate"].append(float(is_refusal(answer, refusals)))
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
                      seed: int = 0, refusals: Sequence[str] = ()) -> BehaviourComparison:
    tuned = generator_behaviour_outcomes(examples, tuned_answers, refusals)
    base = generator_behaviour_outcomes(examples, base_answers, refusals)
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
