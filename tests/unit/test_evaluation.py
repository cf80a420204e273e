"""Metrics and the promotion decision: pure functions, each able to fail."""

import json
import math

import pytest

from components.assistant import Assistant, Manifest
from components.config import GeneratorConfig
from components.evaluation.metrics import (Metric, PairedDelta, answer_metrics, answer_outcomes, contains_fact,
                                   compare_behaviour, generator_behaviour_outcomes, numbers_in, paired_bootstrap_delta,
                                   is_refusal, retrieval_metrics, router_metrics)
from components.evaluation.gates import compare_with_champion, decide_promotion
from components.models.answerability import AnswerabilityCheck

pytestmark = pytest.mark.unit

STORE = ("catalog", "policy")  # the demo's retrieval intents


def test_retrieval_recall_and_mrr():
    golden = [{"gold_doc_ids": ["a"]}, {"gold_doc_ids": ["b"]}, {"gold_doc_ids": []}]
    metrics = retrieval_metrics(golden, [["x", "a"], ["y", "z"], ["a"]])
    assert metrics["retrieval_recall_at_k"].value == 0.5
    assert metrics["retrieval_recall_at_k"].samples == 2
    assert metrics["retrieval_mrr"].value == 0.25


def test_metric_without_samples_is_nan():
    metrics = retrieval_metrics([{"gold_doc_ids": []}], [["a"]])
    assert math.isnan(metrics["retrieval_recall_at_k"].value)
    assert metrics["retrieval_recall_at_k"].samples == 0


@pytest.mark.parametrize(("answer", "fact", "expected"), [
    ("It costs 149.99 USD", "149.99", True), ("It costs 1,499.99 USD", "1499.99", True),
    ("It costs 149.99 USD", "14", False), ("We have 14 units.", "14", True), ("open until 18:00", "18:00", True),
])
def test_key_facts_match_whole_tokens(answer, fact, expected):
    assert contains_fact(answer, fact) is expected


def test_answer_metrics():
    golden = [
        {"answerable": True, "key_facts": ["55.99"], "gold_doc_ids": ["p-1"], "intent": "catalog"},
        {"answerable": True, "key_facts": ["3"], "gold_doc_ids": ["p-2"], "intent": "catalog"},
        {"answerable": False, "key_facts": [], "gold_doc_ids": [], "intent": "catalog"},
    ]
    refusal = "I'm sorry, the store documents I have do not contain that information."
    answers = ["It costs 55.99 USD [p-1].", "We have 4 units [p-9].", refusal]
    metrics = answer_metrics(golden, answers, retrieval_intents=STORE)
    assert metrics["key_fact_accuracy"].value == 0.5
    assert metrics["citation_precision"].value == 0.5
    assert metrics["refusal_accuracy"].value == 1.0 and metrics["refusal_accuracy"].samples == 1
    assert metrics["false_refusal_rate"].value == 0.0 and metrics["false_refusal_rate"].samples == 2
    # Refusing everything passes refusal_accuracy and fails false_refusal_rate; answering everything the reverse.
    always_refuse = answer_metrics(golden, [refusal] * 3, retrieval_intents=STORE)
    assert (always_refuse["refusal_accuracy"].value, always_refuse["false_refusal_rate"].value) == (1.0, 1.0)
    never_refuse = answer_metrics(golden, ["It costs 5 USD [p-1]."] * 3, retrieval_intents=STORE)
    assert (never_refuse["refusal_accuracy"].value, never_refuse["false_refusal_rate"].value) == (0.0, 0.0)
    assert is_refusal("I don’t know.") and not is_refusal("It costs 3 USD.")
    assert is_refusal("The context document does not contain any information about a play area.")


def test_refusals_are_measured_on_the_intents_params_name_for_retrieval():
    """A domain whose intents have its own names (router.retrieval_intents) is measured on them;
    questions of other intents (small talk) never count as refusals or false refusals."""
    golden = [{"id": "u", "intent": "python_faq", "answerable": False}, {"id": "a", "intent": "python_faq", "answerable": True},
              {"id": "s", "intent": "small_talk", "answerable": False}]
    answers = ["The documents do not contain that.", "Use copy.deepcopy() [faq-12].", "Hello!"]
    scored = answer_metrics(golden, answers, retrieval_intents=("python_faq",))
    assert (scored["refusal_accuracy"].value, scored["refusal_accuracy"].samples) == (1.0, 1)
    assert (scored["false_refusal_rate"].value, scored["false_refusal_rate"].samples) == (0.0, 1)
    assert answer_metrics(golden, answers, retrieval_intents=STORE)["refusal_accuracy"].samples == 0


def test_router_metrics():
    golden = [{"intent": "catalog"}, {"intent": "policy"}, {"intent": "catalog"}]
    metrics = router_metrics(golden, ["catalog", "catalog", "catalog"])
    assert metrics["router_accuracy"].value == pytest.approx(2 / 3)
    assert metrics["router_macro_f1"].value == pytest.approx((0.8 + 0.0) / 2)


def test_decision_passes_only_when_every_gate_holds():
    gates = {"retrieval_recall_at_k": 0.8, "key_fact_accuracy": 0.3}
    good = {"retrieval_recall_at_k": Metric(0.9, 50), "key_fact_accuracy": Metric(0.3, 40)}
    assert decide_promotion(good, gates, {}, None).passed
    failed = decide_promotion({**good, "retrieval_recall_at_k": Metric(0.7, 50)}, gates, {}, None)
    assert not failed.passed
    assert failed.failures == ["retrieval_recall_at_k 0.700 (n=50) fails >= 0.8"]


def test_lower_is_better_metrics_are_gated_by_a_maximum():
    gates = {"latency_answer_p95_ms": 2000.0, "general_prompt_regression": 0.2}
    slow = decide_promotion({"latency_answer_p95_ms": Metric(2500.0, 16), "general_prompt_regression": Metric(0.1, 32)},
                            gates, {}, None)
    assert [c.passed for c in slow.checks] == [False, True]
    assert "fails <= 2000" in slow.failures[0]


@pytest.mark.parametrize("metrics", [{}, {"key_fact_accuracy": Metric(float("nan"), 0)}])
def test_missing_or_nan_metric_fails_its_gate(metrics):
    decision = decide_promotion(metrics, {"key_fact_accuracy": 0.0}, {}, None)
    assert not decision.passed
    assert "could not be computed" in decision.reasons[0]


def test_a_gate_on_fewer_samples_than_its_minimum_fails_saying_how_many_it_saw():
    gates, least = {"freshness_retrieval": 0.9}, {"freshness_retrieval": 4}
    assert decide_promotion({"freshness_retrieval": Metric(1.0, 4)}, gates, {}, None, min_samples=least).passed
    one = decide_promotion({"freshness_retrieval": Metric(1.0, 1)}, gates, {}, None, min_samples=least)
    assert one.failures == ["freshness_retrieval 1.000 (n=1) is on fewer samples than the 4 evaluation.min_samples "
                            "asks; gate >= 0.9"]


def test_non_inferiority_uses_the_worse_end_of_the_interval():
    metrics = {"key_fact_accuracy": Metric(0.8, 100)}
    margins = {"key_fact_accuracy": 0.05}
    within = {"key_fact_accuracy": PairedDelta(-0.01, -0.04, 0.02, 100)}
    beyond = {"key_fact_accuracy": PairedDelta(-0.01, -0.09, 0.07, 100)}  # same point estimate, wider interval
    assert decide_promotion(metrics, {}, margins, within, "3").passed
    held = decide_promotion(metrics, {}, margins, beyond, "3")
    assert not held.passed and "vs champion v3" in held.failures[0] and "beyond the -0.05 margin" in held.failures[0]
    no_common = decide_promotion(metrics, {}, margins, {"key_fact_accuracy": PairedDelta(*[float("nan")] * 3, 0)}, "3")
    assert not no_common.passed and "no golden question scored for both" in no_common.failures[0]
    first = decide_promotion(metrics, {}, margins, None)
    assert first.passed and "no champion yet" in first.reasons[0]


def test_champion_comparison_pairs_by_question_id():
    challenger = {"key_fact_accuracy": {"g-1": 1.0, "g-2": 0.0, "g-3": 1.0, "g-new": 0.0}}
    champion = {"key_fact_accuracy": {"g-1": 1.0, "g-2": 1.0, "g-3": 1.0, "g-gone": 1.0}}
    deltas = compare_with_champion(challenger, champion, ("key_fact_accuracy", "false_refusal_rate"), resamples=500)
    delta = deltas["key_fact_accuracy"]
    assert delta.samples == 3 and delta.value == pytest.approx(-1 / 3)
    assert delta.low <= delta.value <= delta.high
    # a champion evaluated before a metric existed is not compared on it (and says so), not failed
    assert "false_refusal_rate" not in deltas
    decision = decide_promotion({}, {}, {"false_refusal_rate": 0.1}, deltas, "4")
    assert decision.passed and "champion v4 was evaluated before ragops measured it" in decision.reasons[0]


def test_citation_recall_and_groundedness():
    golden = [{"id": "a", "answerable": True, "key_facts": ["55.99"], "gold_doc_ids": ["p-1", "p-2"], "intent": "catalog"},
              {"id": "b", "answerable": True, "key_facts": ["3"], "gold_doc_ids": ["p-3"], "intent": "catalog"}]
    answers = ["It costs 55.99 USD [p-1].", "We have 4 units, from 2025 [p-3]."]
    contexts = [["[p-1] Price: 55.99 USD."], ["[p-3] In stock: 3 units."]]
    outcomes = answer_outcomes(golden, answers, contexts, retrieval_intents=STORE)
    assert outcomes["citation_recall"] == {"a": 0.5, "b": 1.0}
    assert outcomes["groundedness"] == {"a": 1.0, "b": 0.0}  # 4 and 2025 are in no retrieved text
    assert numbers_in("It costs 1,299.00 USD [p-012], 3 left.") == {"1299.00", "3"}


def test_generator_behaviour_splits_answerable_and_unanswerable():
    examples = [{"answer": "It costs 5 USD [p-1].", "answerable": True},
                {"answer": "It costs 7 USD [p-2].", "answerable": True},
                {"answer": "I'm sorry, the store documents I have do not contain that information.", "answerable": False}]
    answers = ["It is 5 USD [p-1].", "I'm sorry, the documents do not contain that.", "It costs 9 USD [p-3]."]
    metrics = compare_behaviour(examples, answers, answers).tuned
    assert (metrics["citation_accuracy"].value, metrics["citation_accuracy"].samples) == (0.0 + 1.0 / 2, 2)
    assert (metrics["false_refusal_rate"].value, metrics["refusal_rate"].value) == (0.5, 0.0)
    assert metrics["refusal_rate"].samples == 1


def test_a_behaviour_without_samples_reads_not_measured():
    """With the answerability check deciding refusals the generator's held-out split has no
    unanswerable example: its description says so instead of printing NaN."""
    from components.reporting.models import behaviour_sentence

    examples = [{"answer": "It costs 5 USD [p-1].", "answerable": True}]
    said = behaviour_sentence(compare_behaviour(examples, ["It is 5 USD [p-1]."], ["5 USD"]))
    assert "citation accuracy 1.00 (base model 0.00" in said and "n=1" in said
    assert "refusal rate not measured" in said and "nan" not in said.lower()


def test_behaviour_outcomes_pair_up_across_generators():
    examples = [{"answerable": True, "answer": "It costs 5 USD [p-1]."},
                {"answerable": False, "answer": "I'm sorry, the documents do not contain that."}]
    tuned = generator_behaviour_outcomes(examples, ["It costs 5 USD [p-1].", "The documents do not contain it."])
    base = generator_behaviour_outcomes(examples, ["It costs 5 USD.", "It costs 7 USD [p-2]."])
    assert tuned == {"citation_accuracy": [1.0], "refusal_rate": [1.0], "false_refusal_rate": [0.0]}
    assert base == {"citation_accuracy": [0.0], "refusal_rate": [0.0], "false_refusal_rate": [0.0]}


def test_paired_bootstrap_interval_separates_a_real_difference_from_noise():
    better = paired_bootstrap_delta([1.0] * 18 + [0.0] * 6, [0.0] * 22 + [1.0] * 2)
    assert better.value == pytest.approx(16 / 24) and better.samples == 24
    assert 0 < better.low < better.value < better.high <= 1 and better.significant
    same = paired_bootstrap_delta([1.0, 0.0] * 12, [0.0, 1.0] * 12)
    assert same.value == 0 and same.low < 0 < same.high and not same.significant
    assert paired_bootstrap_delta([1.0] * 5, [1.0] * 5) == PairedDelta(0.0, 0.0, 0.0, 5)
    assert math.isnan(paired_bootstrap_delta([], []).value)
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap_delta([1.0], [])


POLICY = ("Returns policy: You can return any unused item within 30 days of delivery for a full refund. Opened "
          "headphones can be returned within 14 days.")
PRODUCT = "Aurora Edge: The Aurora Edge is sold in our headphones range. Price: 242.99 USD. In stock: 25 units."


@pytest.mark.parametrize(("title", "old", "new", "question", "fact"), [
    ("Aurora Edge", PRODUCT, PRODUCT.replace("242.99", "249.99"),
     'Aurora Edge: what goes in the blank in "Price: ___ USD."?', "249.99"),
    ("Returns policy", POLICY, POLICY.replace("30 days", "45 days"),  # no price anywhere
     'Returns policy: what goes in the blank in "You can return any unused item within ___ days of delivery for a '
     'full refund."?', "45"),
    ("Returns policy", POLICY, POLICY.replace("unused", "unopened"),  # a word, not a number
     'Returns policy: what goes in the blank in "You can return any ___ item within 30 days of delivery for a full '
     'refund."?', "unopened"),
    ("Returns policy", POLICY, POLICY + " Opened software cannot be returned.",  # a new sentence: one word of it
     'Returns policy: what goes in the blank in "Opened ___ cannot be returned."?', "software"),
    ("Returns policy", "", POLICY,  # an added document: a fact of its text, a number first
     'Returns policy: what goes in the blank in "You can return any unused item within ___ days of delivery for a '
     'full refund."?', "30"),
], ids=["price", "policy number", "policy word", "new sentence", "added document"])
def test_a_freshness_probe_asks_for_what_the_edit_introduced(title, old, new, question, fact):
    from components.evaluation.freshness import probe_document

    probe = probe_document("d-1", title, [new], [old] if old else [])
    assert (probe["question"], probe["fact"], probe["kind"]) == (question, fact, "changed" if old else "added")


def test_a_change_with_no_new_words_gives_no_probe():
    from components.evaluation.freshness import probe_document

    assert probe_document("d-1", "Returns policy", [POLICY], [POLICY]) is None  # front matter only
    assert probe_document("d-1", "Returns policy", [POLICY.split(" Opened")[0]], [POLICY]) is None  # a deletion


def test_freshness_outcomes_need_the_current_value():
    from components.evaluation.freshness import freshness_outcomes
    from components.index.search import Retrieved

    probes = [{"id": "fresh-p-1", "doc_id": "p-1", "fact": "12.00"}, {"id": "fresh-p-2", "doc_id": "p-2", "fact": "5.00"}]
    retrieved = [[Retrieved("p-1", "Price: 12.00 USD.", 1.0)], [Retrieved("p-2", "Price: 4.00 USD.", 1.0)]]
    outcomes = freshness_outcomes(probes, retrieved, ["It costs 12.00 USD [p-1].", "It costs 5.00 USD [p-2]."])
    assert outcomes["freshness_retrieval"] == {"fresh-p-1": 1.0, "fresh-p-2": 0.0}  # the index still has the old price
    assert outcomes["freshness_answer"] == {"fresh-p-1": 1.0, "fresh-p-2": 1.0}


@pytest.mark.parametrize(("answer", "ok"), [
    ("Drink water, sleep well and move every day.", True),
    ("I'm sorry, the store documents I have do not contain that information.", False),
    ("Sleep eight hours [p-001].", False),
    ("tips tips tips tips tips tips tips tips tips tips tips tips", False),
    ("Yes.", False),
])
def test_acceptable_general_answer(answer, ok):
    from components.evaluation.bundle import acceptable_general_answer

    assert acceptable_general_answer(answer) is ok


def test_spread_keeps_the_mix_of_a_grouped_list():
    from components.evaluation.bundle import spread

    rows = ["answerable"] * 30 + ["unanswerable"] * 10
    assert spread(rows, 8).count("unanswerable") == 2 and len(spread(rows, 8)) == 8
    assert spread(rows, 0) == rows and spread(rows, 99) == rows


def test_questions_harvested_from_served_answers_are_always_evaluated():
    from components.evaluation.bundle import evaluated_golden

    curated = [{"id": f"g-{i}"} for i in range(40)]
    harvested = [{"id": "h-1", "provenance": {"trace_id": "tr-1"}}]
    assert [r["id"] for r in evaluated_golden(curated + harvested, 4)] == ["g-0", "g-10", "g-20", "g-30", "h-1"]
    assert evaluated_golden(curated + harvested, 0) == curated + harvested


def test_the_configured_refusal_sentence_counts_as_a_refusal():
    """A domain's own refusal sentence (generator.refusal_reply) is a refusal to every metric that
    reads refusals, beside the usual phrasings; an answer is not one just for sharing a word."""
    sentence = "That is not covered by our FAQ."
    golden = [{"id": "u", "intent": "policy", "answerable": False}, {"id": "a", "intent": "policy", "answerable": True}]
    answers = ["Sorry: that is not covered by our  FAQ!", "Returns are covered for 30 days."]
    assert answer_metrics(golden, answers, retrieval_intents=STORE)["refusal_accuracy"].value == 0.0
    scored = answer_metrics(golden, answers, refusals=(sentence,), retrieval_intents=STORE)
    assert scored["refusal_accuracy"].value == 1.0 and scored["false_refusal_rate"].value == 0.0
    assert is_refusal("I don't know.", (sentence,)) and not is_refusal("Our FAQ covers it.", (sentence,))


def test_a_bundles_configured_refusal_and_fixed_reply_count_as_refusals():
    """A domain's refusal sentence and out-of-scope reply, worded so that no usual phrasing matches
    them, are refusals to the bundle's evaluation, with an answerability check or without: an
    unanswerable question they answer is refused, an answerable one falsely refused."""
    manifest = Manifest(encoder="e", generator_base="g", collection="c", intents=["manual", "chat"], top_k=3,
                        hybrid_alpha=0.5, confidence_threshold=0.5, fallback_intent="manual",
                        system_prompt="You answer from the manuals.", max_new_tokens=32, router_max_length=64,
                        refusal_reply="That is not in our manuals.",
                        out_of_scope_reply="Please ask the front desk about that.")
    golden = [{"id": "u1", "intent": "manual", "answerable": False}, {"id": "u2", "intent": "manual", "answerable": False},
              {"id": "a", "intent": "manual", "answerable": True}]
    answers = ["That is not in our manuals.", "Please ask the front desk about that.", "Please ask the front desk about that."]
    usual = answer_metrics(golden, answers, retrieval_intents=("manual",))
    assert usual["refusal_accuracy"].value == 0.0 and usual["false_refusal_rate"].value == 0.0
    without_check = Assistant(manifest, None, None, None, None, None, None)
    with_check = Assistant(manifest, None, None, None, None, None, None,
                           check=AnswerabilityCheck(None, None, 0.5, "The manuals do not say, sorry."))
    for assistant in (without_check, with_check):
        scored = answer_metrics(golden, answers, refusals=assistant.refusal_sentences, retrieval_intents=("manual",))
        assert scored["refusal_accuracy"].value == 1.0 and scored["false_refusal_rate"].value == 1.0
    assert "The manuals do not say, sorry." in with_check.refusal_sentences
    assert Manifest.from_json(json.dumps({k: v for k, v in json.loads(manifest.to_json()).items()
                                          if k != "refusal_reply"})).refusal_reply == GeneratorConfig.refusal_reply
