"""Traces of answers in a real MLflow tracking store: one trace per answer with its steps' spans,
timings and tags; a tracking server that does not answer costs the answer nothing and the lost
traces are counted."""

import time

import mlflow
import pytest

from components.assistant import Stage
from components.registry.traces import UnknownTrace, dropped_traces, record_feedback, trace_answers
from components.registry.tracking import configure_mlflow
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

T0 = 1_780_000_000_000_000_000  # epoch ns
ANSWERS = [
    {"question": "How much is the kettle?", "answer": "It costs 10 USD [p-001].", "citations": ["p-001"],
     "route": "catalog", "route_confidence": 0.91, "answerability": 0.87,
     "chunks": [{"doc_id": "p-001", "text": "Kettle > Price: 10 USD", "score": 0.8, "chunk_id": "c-1"}]},
    {"question": "Tell me a joke about tax law", "answer": "I can only help with questions about our store.",
     "citations": [], "route": "out_of_scope", "route_confidence": 0.66, "answerability": None, "chunks": []},
]
# Both routed together; only the first retrieved, checked and generated.
STAGES = [Stage("route", (0, 1), T0, T0 + 2_000_000), Stage("retrieve", (0,), T0 + 2_000_000, T0 + 9_000_000),
          Stage("check", (0,), T0 + 9_000_000, T0 + 12_000_000),
          Stage("generate", (0,), T0 + 12_000_000, T0 + 812_000_000)]
TAGS = {"bundle_version": "3", "router_version": "2", "collection": "Catalog_v4", "data.golden.jsonl.md5": "ab12"}


@pytest.fixture()
def tracking(settings):
    previous = mlflow.get_tracking_uri()
    configure_mlflow(settings, "traces")
    yield
    mlflow.set_tracking_uri(previous)


def test_each_answer_is_a_trace_of_the_steps_it_took(tracking):
    ids = trace_answers(ANSWERS, STAGES, TAGS)
    assert all(ids) and len(set(ids)) == 2
    first, second = (mlflow.get_trace(i, flush=True) for i in ids)

    spans = {s.name: s for s in first.data.spans}
    assert set(spans) == {"answer", "route", "retrieve", "check", "generate"}
    root = spans["answer"]
    assert all(s.parent_id == root.span_id for name, s in spans.items() if name != "answer")
    assert (root.start_time_ns, root.end_time_ns) == (T0, T0 + 812_000_000)
    assert (spans["retrieve"].start_time_ns, spans["retrieve"].end_time_ns) == (T0 + 2_000_000, T0 + 9_000_000)
    assert root.inputs == {"question": "How much is the kettle?"}
    assert root.outputs == {"answer": "It costs 10 USD [p-001].", "citations": ["p-001"]}
    assert root.attributes["route"] == "catalog" and root.attributes["batch_size"] == 2
    assert spans["route"].outputs == {"route": "catalog", "confidence": 0.91}
    assert spans["retrieve"].outputs == [{"chunk_id": "c-1", "doc_id": "p-001", "score": 0.8, "text": "Kettle > Price: 10 USD"}]
    assert spans["check"].outputs == {"answerability": 0.87}
    assert {k: first.info.tags[k] for k in TAGS} == TAGS

    assert {s.name for s in second.data.spans} == {"answer", "route"}  # a fixed reply: routed only
    found = mlflow.search_traces(filter_string="tags.bundle_version = '3'", return_type="list", include_spans=False)
    assert {t.info.trace_id for t in found} == set(ids)


def test_feedback_lands_on_the_trace_even_right_after_the_answer(tracking):
    """A rating sent the moment the answer went out waits for its trace's export; a correction is
    an expectation beside it; an id the store does not have is unknown, a rating must be up or down."""
    (trace_id, _) = trace_answers(ANSWERS, STAGES, TAGS)
    assert record_feedback(trace_id, "down", correction="It costs 12 USD [p-001].", comment="old price") == [
        "user_rating", "expected_answer"]
    assessments = {a.name: a for a in mlflow.get_trace(trace_id).info.assessments}
    assert assessments["user_rating"].value == "down" and assessments["user_rating"].rationale == "old price"
    assert assessments["expected_answer"].value == "It costs 12 USD [p-001]."
    assert assessments["user_rating"].source.source_type == "HUMAN"
    with pytest.raises(UnknownTrace, match="no trace 'tr-0000'"):
        record_feedback("tr-0000", "up")
    with pytest.raises(ValueError, match="rating must be one of up, down"):
        record_feedback(trace_id, "meh")


def test_a_tracking_server_that_does_not_answer_costs_the_answer_nothing(tracking, monkeypatch):
    """Nothing listens on the port (a server that died): the traces are built and handed over in
    milliseconds, and each one the store did not take is counted once MLflow gives up on it."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what `ragops serve` and `ask` set, lower
    mlflow.set_tracking_uri(f"http://127.0.0.1:{free_port()}")
    before = dropped_traces()
    tic = time.perf_counter()
    ids = trace_answers(ANSWERS, STAGES, TAGS)
    handed_over = time.perf_counter() - tic
    assert all(ids)
    mlflow.flush_trace_async_logging()
    assert dropped_traces() - before == 2
    print(f"two traces handed over in {handed_over * 1000:.1f} ms with the tracking server down")


def test_the_review_queue_lists_what_needs_a_human_until_it_is_decided(tracking):
    """Down-voted or corrected, declined, routed unsure or weakly retrieved: in the queue with why;
    a confident, well retrieved, unrated answer is not; a decision takes an item out and stays on its trace."""
    from components.config import Params
    from components.registry.review_queue import Acceptance, ReviewError, decide, review_queue

    refusal = "I'm sorry, the documents I have do not contain that information."
    names = ("confident", "rated", "declined", "unsure", "weak")
    answers = [{**ANSWERS[0], "question": f"{name}?", "route_confidence": 0.2 if name == "unsure" else 0.9,
                "answer": refusal if name == "declined" else ANSWERS[0]["answer"],
                "chunks": [{**ANSWERS[0]["chunks"][0], "score": 0.55 if name == "weak" else 0.8}]} for name in names]
    stages = [Stage("route", tuple(range(5)), T0, T0 + 1000), Stage("retrieve", tuple(range(5)), T0 + 1000, T0 + 2000)]
    ids = dict(zip(names, trace_answers(answers, stages, TAGS, refusals=(refusal,))))
    record_feedback(ids["rated"], "down", correction="It costs 12 USD [p-001].", comment="old price")
    mlflow.flush_trace_async_logging()

    queue = {item.trace_id: item for item in review_queue(Params(), days=100_000)}
    assert {ids[k]: queue[ids[k]].reasons for k in names[1:]} == {
        ids["rated"]: ["down-voted", "corrected"], ids["declined"]: ["declined"], ids["unsure"]: ["router unsure"],
        ids["weak"]: ["weak retrieval"]}  # 0.55 under feedback.weak_retrieval_score
    assert ids["confident"] not in queue
    item = queue[ids["rated"]]
    assert (item.question, item.correction, item.comment, item.bundle_version) == (
        "rated?", "It costs 12 USD [p-001].", "old price", "3")
    assert [c["doc_id"] for c in item.chunks] == ["p-001"]

    with pytest.raises(ReviewError, match="needs the documents that answer it"):
        Acceptance(golden=True)
    with pytest.raises(ReviewError, match="p-002 was not"):  # a training example answers from what was served
        decide(ids["rated"], "ana", Acceptance(training=True, doc_ids=("p-002",), answer="12 USD [p-002]."))
    with pytest.raises(ReviewError, match="not both"):  # a golden question stays out of the training data
        Acceptance(golden=True, training=True, doc_ids=("p-001",), answer="12 USD [p-001].", key_facts=("12 USD",))
    tags = decide(ids["rated"], "ana", Acceptance(training=True, doc_ids=("p-001",), answer="It costs 12 USD [p-001]."))
    decide(ids["declined"], "ana", None, note="the documents do not say")
    assert {item.trace_id for item in review_queue(Params(), days=100_000)} == {ids["unsure"], ids["weak"]}
    stored = mlflow.get_trace(ids["rated"]).info.tags
    assert {k: stored[k] for k in tags} == tags and stored["review.as"] == "training"
    with pytest.raises(UnknownTrace):
        decide("tr-0000", "ana", None)
