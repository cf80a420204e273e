"""Traces of served answers in MLflow (its open-source tracing): one trace per answered question,
with a span per step it went through (route → retrieve → check → generate), the question, the
route and its confidence, the retrieved chunks with their scores and the answer, tagged with the
bundle, model, index and data versions behind it.

A trace is built after the answer from the steps' measured times (components.assistant.Stage):
nothing is traced while the models work, and questions answered together in one batch share
their steps' times. MLflow exports it in the background; when the tracking store does not take it
(a server that is down), the answer has already gone out: the trace is dropped and counted, never a
failed request.

    >>> stages = []
    >>> answers = [asdict(a) for a in assistant.answer(questions, stages=stages)]  # doctest: +SKIP
    >>> with_trace_ids(answers, stages, answer_tags(assistant.manifest, "3"), assistant.refusal_sentences)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow
from mlflow.entities import AssessmentSource, AssessmentSourceType, SpanType
from mlflow.exceptions import MlflowException

from components.assistant import Manifest, Stage
from components.registry.tracking import lineage_tags

log = logging.getLogger("ragops.traces")

SPAN_TYPES = {"route": SpanType.CHAIN, "retrieve": SpanType.RETRIEVER, "check": SpanType.CHAIN,
              "generate": SpanType.LLM}
# MLflow 3.17 reports a trace its store did not take only as a log record of these loggers (the
# export runs in its own thread and never raises); tests/integration/test_traces.py kills a
# tracking server to hold the count to it, so an MLflow that words it otherwise fails there.
EXPORT_LOGGERS = ("mlflow.tracing.export.mlflow_v3", "mlflow.tracing.export.async_export_queue")
EXPORT_FAILURES = ("Failed to send trace to MLflow backend", "Trace export queue is full")


RATINGS = ("up", "down")
RATING = "user_rating"  # the feedback's name on the trace (its comment is the rationale)
CORRECTION = "expected_answer"  # a correction: the answer the customer expected, as an expectation
# A trace is exported a few seconds after its answer; feedback on one this process made that soon
# waits for it this long instead of calling it unknown.
EXPORT_WAIT_S = 20.0


class UnknownTrace(LookupError):
    """No trace with this id in the tracking store."""


def answer_tags(manifest: Manifest, bundle_version: str = "") -> dict[str, str]:
    """What a trace is tagged with: the bundle version (when known: `mlflow models serve` does not
    say it), its router and generator versions, its index collection and data versions."""
    tags = {"bundle_version": bundle_version, "router_version": manifest.router_version,
            "generator_version": manifest.generator_version, "collection": manifest.collection,
            **lineage_tags(manifest.data_versions)}
    return {k: str(v) for k, v in tags.items() if v}


class _DroppedCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(EXPORT_FAILURES):
            self.add()

    def add(self) -> None:
        with self._lock:
            self.count += 1


_DROPPED = _DroppedCounter()
for _name in EXPORT_LOGGERS:
    logging.getLogger(_name).addHandler(_DROPPED)
# Its INFO line at every exit that traced ("Flushing the async trace logging queue...") is noise.
logging.getLogger("mlflow.tracing.export.async_export_queue").setLevel(logging.WARNING)


def dropped_traces() -> int:
    """Traces this process built that the tracking store did not take, or could not build."""
    return _DROPPED.count


def limit_export_retries() -> None:
    """For a process that traces answers (`ragops serve`, `ragops ask`): one HTTP retry unless the
    user set it. With MLflow's default (7) an export to a tracking server that is down holds its
    worker about 4 minutes per call, later traces queue up, and the exit flush waits as long."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")


_RECENT: dict[str, float] = {}  # trace id → when this process handed it over for export


def with_trace_ids(answers: Sequence[dict], stages: Sequence[Stage], tags: Mapping[str, str],
                   refusals: Sequence[str] = ()) -> list[dict]:
    """The answer dicts, each with the id of its trace (`trace_answers`) as `trace_id`."""
    ids = trace_answers(answers, stages, tags, refusals)
    return [{**answer, "trace_id": trace_id} for answer, trace_id in zip(answers, ids, strict=True)]


def trace_answers(answers: Sequence[dict], stages: Sequence[Stage], tags: Mapping[str, str],
                  refusals: Sequence[str] = ()) -> list[str | None]:
    """One trace per answer dict (an Answer as a dict), built from the stages of the call that made
    them; the trace ids, None where the trace could not be started (counted as dropped). Besides
    `tags`, each trace is tagged with its route and confidence, its top retrieval score, and
    whether the answer is one of the `refusals` (what the review queue sorts by)."""
    now = time.monotonic()
    for trace_id, handed in list(_RECENT.items()):
        if now - handed > EXPORT_WAIT_S:
            _RECENT.pop(trace_id, None)
    ids = []
    for index, answer in enumerate(answers):
        try:
            ids.append(_trace_one(answer, [s for s in stages if index in s.questions], len(answers),
                                  {**tags, **_answer_tags(answer, refusals)}))
        except Exception:  # noqa: BLE001 (tracing never fails an answer; the count and the log say it)
            _DROPPED.add()
            log.warning("could not trace an answer", exc_info=True)
            ids.append(None)
    return ids


def _trace_one(answer: dict, stages: list[Stage], batch: int, tags: Mapping[str, str]) -> str | None:
    if not stages:
        return None
    question = answer["question"]
    root = mlflow.start_span_no_context(
        "answer", span_type=SpanType.CHAIN, inputs={"question": question}, tags=dict(tags),
        attributes={"batch_size": batch}, start_time_ns=min(s.start_ns for s in stages))
    for stage in sorted(stages, key=lambda s: s.start_ns):
        span = mlflow.start_span_no_context(stage.name, span_type=SPAN_TYPES.get(stage.name, SpanType.UNKNOWN),
                                            parent_span=root, inputs={"question": question},
                                            start_time_ns=stage.start_ns)
        span.end(outputs=_stage_outputs(stage.name, answer), end_time_ns=stage.end_ns)
    root.end(outputs={"answer": answer["answer"], "citations": answer["citations"]},
             attributes={"route": answer["route"], "route_confidence": answer["route_confidence"]},
             end_time_ns=max(s.end_ns for s in stages))
    _RECENT[root.trace_id] = time.monotonic()
    return root.trace_id


def _answer_tags(answer: dict, refusals: Sequence[str]) -> dict[str, str]:
    tags = {"route": answer["route"], "route_confidence": f"{answer['route_confidence']:.4f}",
            "refused": str(answer["answer"].strip() in {r.strip() for r in refusals}).lower()}
    if answer["chunks"]:
        tags["top_score"] = f"{max(c['score'] for c in answer['chunks']):.4f}"
    return tags


def _stage_outputs(name: str, answer: dict) -> Any:
    if name == "route":
        return {"route": answer["route"], "confidence": answer["route_confidence"]}
    if name == "retrieve":
        return [{"chunk_id": c.get("chunk_id", ""), "doc_id": c["doc_id"], "score": c["score"], "text": c["text"]}
                for c in answer["chunks"]]  # the text: what a reviewer reads, and a harvested example's context
    if name == "check":
        return {"answerability": answer.get("answerability")}
    return {"answer": answer["answer"]}


def record_feedback(trace_id: str, rating: str, correction: str | None = None, comment: str | None = None,
                    source: str = "customer") -> list[str]:
    """A customer's rating of an answer ("up" or "down", with an optional comment) as MLflow
    feedback on its trace, and a correction as an expectation; the names recorded. UnknownTrace
    when the store has no such trace."""
    if rating not in RATINGS:
        raise ValueError(f"rating must be one of {', '.join(RATINGS)}, got {rating!r}")
    who = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=source)
    deadline = _RECENT.get(trace_id, -EXPORT_WAIT_S) + EXPORT_WAIT_S
    while True:
        try:
            mlflow.log_feedback(trace_id=trace_id, name=RATING, value=rating, source=who, rationale=comment or None)
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            if time.monotonic() > deadline:
                raise UnknownTrace(f"no trace {trace_id!r} in the tracking store; send the trace_id an answer "
                                   f"came with") from None
            time.sleep(0.5)  # made here moments ago: its export is on its way
    if not correction:
        return [RATING]
    mlflow.log_expectation(trace_id=trace_id, name=CORRECTION, value=correction, source=who)
    return [RATING, CORRECTION]
