"""The review queue: served answers a human should look at, read from their MLflow traces, and the
reviewer's decision on each, recorded on the trace. Nothing reaches the data without one.

An answer needs review when a customer down-voted it or sent a correction, when the assistant
declined it (the refusal or out-of-scope sentence), when the router was unsure of it (its
confidence under router.confidence_threshold, where it fell back to router.fallback_intent), or
when retrieval was weak (its top score under feedback.weak_retrieval_score).

    >>> items = review_queue(params, days=7)  # doctest: +SKIP
    >>> decide(items[0].trace_id, "ana", golden=True, doc_ids=["p-001"],
    ...        answer="It costs 12 USD [p-001].")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import mlflow
from mlflow.exceptions import MlflowException

from components.config import Params
from components.registry.traces import CORRECTION, RATING, UnknownTrace

DECISION_TAG = "review.decision"  # accepted | rejected; its details under review.*


class ReviewError(ValueError):
    """A decision that cannot be recorded as given; the message says what to change."""


@dataclass
class ReviewItem:
    trace_id: str
    when: str
    reasons: list[str]
    question: str
    answer: str
    route: str
    route_confidence: float
    bundle_version: str
    correction: str | None = None
    comment: str | None = None
    chunks: list[dict] = field(default_factory=list)  # chunk_id, doc_id, score of what was retrieved


def review_queue(params: Params, days: float = 7.0, limit: int = 200) -> list[ReviewItem]:
    """Undecided answers of the last `days` that need review, newest first."""
    since = int((time.time() - days * 86400) * 1000)
    traces = mlflow.search_traces(filter_string=f"trace.timestamp_ms > {since}", order_by=["timestamp_ms DESC"],
                                  max_results=limit, return_type="list", include_spans=True)
    items = []
    for trace in traces:
        tags = trace.info.tags
        if DECISION_TAG in tags or "route" not in tags:
            continue  # decided, or not an answer of ragops
        ratings = {a.name: a for a in trace.info.assessments or [] if a.valid is not False}
        rating, correction = ratings.get(RATING), ratings.get(CORRECTION)
        reasons = [reason for reason, applies in (
            ("down-voted", rating is not None and rating.value == "down"),
            ("corrected", correction is not None),
            ("declined", tags.get("refused") == "true"),
            ("router unsure", float(tags.get("route_confidence", 1.0)) < params.router.confidence_threshold),
            ("weak retrieval", float(tags.get("top_score", 1.0)) < params.feedback.weak_retrieval_score),
        ) if applies]
        if reasons:
            items.append(_item(trace, reasons, rating, correction))
    return items


def _item(trace, reasons: list[str], rating, correction) -> ReviewItem:
    spans = {s.name: s for s in trace.data.spans}
    root = spans["answer"]
    return ReviewItem(trace.info.trace_id, datetime.fromtimestamp(trace.info.request_time / 1000, UTC).isoformat(
        timespec="seconds"), reasons, root.inputs["question"], root.outputs["answer"], trace.info.tags["route"],
        float(trace.info.tags.get("route_confidence", "nan")), trace.info.tags.get("bundle_version", ""),
        correction.value if correction is not None else None, rating.rationale if rating is not None else None,
        list(spans["retrieve"].outputs) if "retrieve" in spans else [])


def decide(trace_id: str, reviewer: str, golden: bool = False, training: bool = False, doc_ids: list[str] | None = None,
           answer: str = "", reject: bool = False, note: str = "") -> dict[str, str]:
    """Record a reviewer's decision on the trace: rejected, or accepted as a golden question and/or
    a training example with the documents that answer it and the right answer. The tags written."""
    if reject == (golden or training):
        raise ReviewError("decide either reject, or accept as golden and/or training (not both, not neither)")
    if not reviewer.strip():
        raise ReviewError("name the reviewer (--reviewer): a decision is recorded with who made it")
    if not reject and not (doc_ids and answer.strip()):
        raise ReviewError("an accepted item needs the documents that answer it (--doc-id, repeatable) and the right "
                          "answer (--answer), citing them as [doc-id]")
    tags = {DECISION_TAG: "rejected" if reject else "accepted", "review.reviewer": reviewer,
            "review.at": datetime.now(UTC).isoformat(timespec="seconds"), "review.note": note}
    if not reject:
        tags |= {"review.as": ",".join(k for k, v in (("golden", golden), ("training", training)) if v),
                 "review.doc_ids": json.dumps(doc_ids), "review.answer": answer}
    try:
        mlflow.get_trace(trace_id, silent=True) or _unknown(trace_id)
        for key, value in tags.items():
            mlflow.set_trace_tag(trace_id, key, value)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            _unknown(trace_id)
        raise
    return tags


def _unknown(trace_id: str) -> None:
    raise UnknownTrace(f"no trace {trace_id!r} in the tracking store; `ragops feedback review` lists the trace ids")
