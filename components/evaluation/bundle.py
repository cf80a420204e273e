"""Evaluating a candidate bundle as it would serve: golden-set metrics with per-question outcomes,
the 2x2 ablation, the regression on general prompts, freshness probes and latency.

Everything is computed offline from the assistant itself (no external judge):
- golden set: retrieval (hybrid, plus vector-only and BM25-only beside it), routing, answers
  (key facts, citations, refusals, groundedness) through the whole route → retrieve → generate;
- ablation: {base, fine-tuned generator} x {no retrieval, retrieval} on the golden questions of
  the retrieval intents (router.retrieval_intents), the project's measured answer to "fine-tuning or RAG?";
- general prompts: the fine-tuned generator against its base model on prompts outside the store
  (does it still answer, or has it learnt to refuse and cite everywhere?);
- freshness: questions about what the changed documents now say must come back with it
  (components/evaluation/freshness.py);
- latency: questions answered one at a time, route+retrieve and the full answer;
- prompt injection: the red-team attacks planted in documents beside the catalog (components/evaluation/injection.py).

    >>> result = evaluate_bundle(assistant, golden, general, index_version, params.evaluation, 42, attacks,
    ...                          params.index)  # doctest: +SKIP
    >>> result.metrics["key_fact_accuracy"]  # doctest: +SKIP
    Metric(value=0.88, samples=102)
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from components.assistant import Assistant
from components.config import EvaluationConfig, IndexConfig
from components.evaluation.freshness import freshness_outcomes, freshness_probes
from components.evaluation.injection import measure_injection
from components.evaluation.metrics import (Metric, Outcomes, PairedDelta, aggregate, answer_metrics, answer_outcomes,
                                           extract_citations, is_refusal, paired_bootstrap_delta, retrieval_metrics,
                                           retrieval_outcomes, router_metrics, router_outcomes)
from components.index.build import IndexVersion
from components.index.search import Retrieved
from components.prompting import build_messages

ABLATION_ARMS = (("base", False), ("base", True), ("fine-tuned", False), ("fine-tuned", True))
ABLATION_METRICS = ("key_fact_accuracy", "citation_precision", "refusal_accuracy", "false_refusal_rate",
                    "groundedness")


@dataclass(frozen=True)
class AblationCell:
    generator: str  # base | fine-tuned
    retrieval: bool
    metrics: dict[str, Metric]

    @property
    def key(self) -> str:
        return f"{self.generator.replace('-', '_')}_{'rag' if self.retrieval else 'no_rag'}"


def ablation_cells(metrics: dict[str, Metric]) -> list[AblationCell]:
    """The ablation back from its flat `ablation_<arm>_<metric>` metrics (what a pipeline result holds)."""
    cells = [AblationCell(generator, retrieval, {}) for generator, retrieval in ABLATION_ARMS]
    return [AblationCell(c.generator, c.retrieval, {m: metrics[f"ablation_{c.key}_{m}"] for m in ABLATION_METRICS})
            for c in cells if all(f"ablation_{c.key}_{m}" in metrics for m in ABLATION_METRICS)]


@dataclass(frozen=True)
class BundleEvaluation:
    metrics: dict[str, Metric]
    outcomes: Outcomes  # golden per-question outcomes, for pairing with the champion
    answers: list[dict]  # golden questions with the bundle's answers
    ablation: list[AblationCell]
    general_regression: PairedDelta  # base acceptable-answer rate minus fine-tuned's, per prompt
    general_answers: list[dict]
    freshness: list[dict]  # probes with what came back
    freshness_source: str  # which documents the probes were built from
    injection: list[dict]  # red-team attacks: question, answer, exposed, succeeded


def _chunk_texts(chunks: list[Retrieved]) -> list[str]:
    return [c.text for c in chunks]


def run_ablation(assistant: Assistant, rows: list[dict], retrieved: list[list[Retrieved]],
                 served: dict[int, str]) -> list[AblationCell]:
    """The same questions four ways. `served`: row index → the bundle's own answer where it
    retrieved for that question (the fine-tuned + retrieval arm is the bundle as served, its
    answerability check included; the other arms are the generator alone). Groundedness is
    measured against the retrieved text in every arm, shown or not: without retrieval it says how
    often a stated number is the catalog's."""
    prompt = assistant.manifest.system_prompt
    contexts = [_chunk_texts(hits) for hits in retrieved]
    cells = []
    # the fine-tuned arms first: the golden questions were answered with it, and the base model's arms
    # are followed by the general prompts' base answers (one engine in memory at a time: Assistant._engine)
    for generator, use_retrieval in sorted(ABLATION_ARMS, key=lambda arm: arm[0] == "base"):
        reuse = served if (generator, use_retrieval) == ("fine-tuned", True) else {}
        todo = [i for i in range(len(rows)) if i not in reuse]
        conversations = [build_messages(rows[i]["question"], [(c.doc_id, c.text) for c in retrieved[i]]
                                        if use_retrieval else [], prompt) for i in todo]
        generated = dict(zip(todo, assistant.generate(
            conversations, use_adapter=generator == "fine-tuned",
            progress=f"evaluation: ablation, {generator}, {'retrieval' if use_retrieval else 'no retrieval'}")))
        answers = [reuse.get(i, generated.get(i, "")) for i in range(len(rows))]
        scored = answer_metrics(rows, answers, contexts, assistant.refusal_sentences,
                                retrieval_intents=assistant.manifest.retrieval_intents)
        cells.append(AblationCell(generator, use_retrieval, {m: scored[m] for m in ABLATION_METRICS}))
    return sorted(cells, key=lambda cell: ABLATION_ARMS.index((cell.generator, cell.retrieval)))


def refusal_decisions(assistant: Assistant, golden: list[dict], answers: list, retrieved: list[list[Retrieved]],
                      generator_questions: int = 0) -> dict[str, Metric]:
    """The refusal decision three ways on the golden questions of the retrieval intents: as served (the
    gated refusal_accuracy and false_refusal_rate, every question), and on the same
    `generator_questions` of them evenly spread (0 = all) by the answerability check alone (refuse
    when its score is under the threshold) and by the generator alone (what the check refused is
    generated anyway, the one cost here). Not gated: they say what the check adds. Empty for a
    bundle without a check: served is the generator alone."""
    if assistant.check is None:
        return {}
    rows = spread([i for i, row in enumerate(golden) if row.get("intent") in assistant.manifest.retrieval_intents
                   and answers[i].answerability is not None], generator_questions)
    refused = [i for i in rows if answers[i].answerability < assistant.check.threshold]
    prompt = assistant.manifest.system_prompt
    generated = dict(zip(refused, assistant.generate(
        [build_messages(golden[i]["question"], [(c.doc_id, c.text) for c in retrieved[i]], prompt) for i in refused],
        progress="evaluation: generator alone, on what the check refused")))
    ways = {"check_only": [assistant.check.refusal_reply if i in generated else "" for i in rows],
            "generator_only": [generated.get(i, answers[i].answer) for i in rows]}
    metrics = {}
    for way, texts in ways.items():
        scored = answer_metrics([golden[i] for i in rows], texts, refusals=assistant.refusal_sentences,
                                retrieval_intents=assistant.manifest.retrieval_intents)
        metrics.update({f"{name}_{way}": scored[name] for name in ("refusal_accuracy", "false_refusal_rate")})
    return metrics


def acceptable_general_answer(answer: str, refusals: Sequence[str] = ()) -> bool:
    """An answer to a general prompt that a base instruct model would give: some words, no refusal,
    no invented document citation, not a loop of the same few words."""
    words = re.findall(r"\w+", answer.lower())
    looping = len(words) >= 12 and len(set(words)) / len(words) < 0.3
    return len(words) >= 3 and not is_refusal(answer, refusals) and not extract_citations(answer) and not looping


def general_prompt_regression(assistant: Assistant, prompts: list[dict], seed: int,
                              resamples: int) -> tuple[PairedDelta, list[dict]]:
    """Base model's acceptable-answer rate minus the fine-tuned one's on the same general prompts
    (plain chat, no store context): > 0 means fine-tuning cost general behaviour."""
    conversations = [[{"role": "user", "content": p["prompt"]}] for p in prompts]
    # the base model first: the ablation's last arms were its
    base = assistant.generate(conversations, use_adapter=False, progress="evaluation: general prompts, base")
    tuned = assistant.generate(conversations, progress="evaluation: general prompts, fine-tuned")
    tuned_ok = [float(acceptable_general_answer(a, assistant.refusal_sentences)) for a in tuned]
    base_ok = [float(acceptable_general_answer(a, assistant.refusal_sentences)) for a in base]
    rows = [{"id": p["id"], "prompt": p["prompt"], "fine_tuned": t, "base": b, "fine_tuned_ok": bool(to),
             "base_ok": bool(bo)} for p, t, b, to, bo in zip(prompts, tuned, base, tuned_ok, base_ok)]
    return paired_bootstrap_delta(base_ok, tuned_ok, resamples=resamples, seed=seed), rows


def _percentile_metric(values_ms: list[float], q: float) -> Metric:
    return Metric(float(np.percentile(values_ms, q)) if values_ms else float("nan"), len(values_ms))


def measure_latency(assistant: Assistant, questions: list[str]) -> dict[str, Metric]:
    """One question at a time, as a user would ask: route+retrieve, then the full answer. Everything
    but generation is timed now; so is generation, unless the champion's evaluation generated the
    same conversation with the same generator as a single request on this machine: then its
    generation time is added to the time measured now (components/evaluation/memo.py)."""
    with assistant.live():
        assistant.answer(questions[:1])  # warm-up (first-call allocations), not measured
    route_retrieve, full = [], []
    for question in questions:
        tic = time.perf_counter()
        assistant.route([question])
        assistant.retrieve([question])
        route_retrieve.append((time.perf_counter() - tic) * 1000)
        with _carried_generation(assistant) as carried:
            tic = time.perf_counter()
            assistant.answer([question])
            full.append((time.perf_counter() - tic) * 1000 + sum(carried))
    return {"latency_route_retrieve_p50_ms": _percentile_metric(route_retrieve, 50),
            "latency_route_retrieve_p95_ms": _percentile_metric(route_retrieve, 95),
            "latency_answer_p50_ms": _percentile_metric(full, 50),
            "latency_answer_p95_ms": _percentile_metric(full, 95)}


@contextlib.contextmanager
def _carried_generation(assistant: Assistant) -> Iterator[list[float]]:
    """The generation times taken from the memo for what is answered within (none without a memo)."""
    if assistant.memo is None:
        yield []
    else:
        with assistant.memo.measuring_latency() as carried:
            yield carried


def _take(rows: list, n: int) -> list:
    return rows[:n] if n else rows


def spread(rows: list, n: int) -> list:
    """`n` rows evenly spaced over `rows` (all when n is 0 or more than there are): a golden set
    grouped by kind (answerable first, say) keeps its mix."""
    if not n or n >= len(rows):
        return rows
    return [rows[i * len(rows) // n] for i in range(n)]


def evaluated_golden(golden: list[dict], n: int) -> list[dict]:
    """The golden questions an evaluation asks: `n` evenly spread over the curated ones (all when n
    is 0), then every question harvested from served answers (rows with a provenance), whatever n:
    they are the newest evidence of what customers ask and the assistant got wrong."""
    return spread([r for r in golden if "provenance" not in r], n) + [r for r in golden if "provenance" in r]


def measure_freshness(assistant: Assistant, index: IndexVersion, config: EvaluationConfig,
                      seed: int) -> tuple[dict[str, Metric], list[dict], str]:
    """The freshness probes of `index` (at least the freshness gates' minimum of samples) asked as
    served: their metrics, the probes with what came back, and where they came from."""
    least = max(config.min_samples.get(m, 0) for m in ("freshness_retrieval", "freshness_answer"))
    probes, source = freshness_probes(assistant.client, index, config.freshness_probes, seed, least)
    hits = assistant.retrieve([p["question"] for p in probes])
    answers = assistant.answer([p["question"] for p in probes], retrieved_all=hits,
                               progress="evaluation: freshness probes")
    rows = [{**p, "answer": a.answer, "retrieved": [c.doc_id for c in found]}
            for p, a, found in zip(probes, answers, hits)]
    return aggregate(freshness_outcomes(probes, hits, [a.answer for a in answers])), rows, source


def evaluate_bundle(assistant: Assistant, golden: list[dict], general_prompts: list[dict], index: IndexVersion,
                    config: EvaluationConfig, seed: int, attacks: list[dict], index_config: IndexConfig) -> BundleEvaluation:
    questions = [row["question"] for row in golden]
    retrieved = assistant.retrieve(questions)
    answers = assistant.answer(questions, retrieved_all=retrieved, progress="evaluation: golden questions")
    outcomes: Outcomes = {
        **retrieval_outcomes(golden, [[c.doc_id for c in hits] for hits in retrieved]),
        **router_outcomes(golden, [a.route for a in answers]),
        **answer_outcomes(golden, [a.answer for a in answers], [[c["text"] for c in a.chunks] for a in answers],
                          assistant.refusal_sentences, retrieval_intents=assistant.manifest.retrieval_intents)}
    metrics = {**aggregate(outcomes), "router_macro_f1": router_metrics(golden, [a.route for a in answers])["router_macro_f1"]}
    metrics.update(refusal_decisions(assistant, golden, answers, retrieved, config.generator_alone_questions))
    for mode in ("vector", "bm25"):  # beside the served hybrid, same questions and k
        metrics.update(retrieval_metrics(golden, [[c.doc_id for c in hits] for hits in
                                                  assistant.retrieve(questions, mode=mode)], mode))

    retrieval_intents = assistant.manifest.retrieval_intents
    in_scope = spread([i for i, row in enumerate(golden) if row.get("intent") in retrieval_intents],
                      config.ablation_questions)
    served = {n: answers[i].answer for n, i in enumerate(in_scope) if answers[i].route in retrieval_intents}
    ablation = run_ablation(assistant, [golden[i] for i in in_scope], [retrieved[i] for i in in_scope], served)
    for cell in ablation:
        metrics.update({f"ablation_{cell.key}_{name}": m for name, m in cell.metrics.items()})

    regression, general_answers = general_prompt_regression(assistant, _take(general_prompts, config.general_prompts),
                                                            seed, config.bootstrap_resamples)
    metrics["general_prompt_regression"] = Metric(regression.value, regression.samples)
    for who in ("fine_tuned", "base"):
        metrics[f"general_acceptable_{who}"] = Metric(
            float(np.mean([r[f"{who}_ok"] for r in general_answers])) if general_answers else float("nan"),
            len(general_answers))

    freshness, source = [], "off (evaluation.freshness_probes is 0)"
    if config.freshness_probes:
        freshness_metrics, freshness, source = measure_freshness(assistant, index, config, seed)
        metrics.update(freshness_metrics)

    injection = measure_injection(assistant, assistant.client, spread(attacks, config.injection_attacks), index_config)
    metrics.update(injection.metrics)

    metrics.update(measure_latency(assistant, questions[: config.latency_questions]))
    answered = [{"id": row.get("id"), "question": a.question, "answer": a.answer, "route": a.route,
                 "citations": a.citations, "retrieved": [c.doc_id for c in hits]}
                for row, a, hits in zip(golden, answers, retrieved)]
    return BundleEvaluation(metrics, outcomes, answered, ablation, regression, general_answers, freshness, source,
                            injection.rows)
