"""The review queue: served answers a human should look at, read from their MLflow traces, and the
reviewer's decision on each, recorded on the trace. Nothing reaches the data without one.

An answer needs review when a customer down-voted it or sent a correction, when the assistant
declined it (the refusal or out-of-scope sentence), when the router was unsure of it (its
confidence under router.confidence_threshold, where it fell back to router.fallback_intent), or
when retrieval was weak (its top score under feedback.weak_retrieval_score).

    >>> items = review_queue(params, days=7)  # doctest: +SKIP
    >>> decide(items[0].trace_id, "ana", Acceptance(golden=True, doc_ids=("p-001",),
    ...        answer="It costs 12 USD [p-001].", key_facts=("12 USD",)))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import mlflow
from mlflow.exceptions import MlflowException

from components.config import Params
from components.data.curate import HARVESTED
from components.data.harvest import Accepted
from components.registry.traces import CORRECTION, RATING, UnknownTrace

DECISION_TAG = "review.decision"  # accepted | rejected; its details under review.*
HARVEST_TAG = "harvest.data_version"  # set once harvested: the md5s of the data versions that hold it
HARVEST_ERROR_TAG = "harvest.error"  # why an accepted item was left out of the data (decide it again)


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
        if (DECISION_TAG in tags and HARVEST_ERROR_TAG not in tags) or "route" not in tags:
            continue  # decided, or not an answer of ragops
        ratings = {a.name: a for a in trace.info.assessments or [] if a.valid is not False}
        rating, correction = ratings.get(RATING), ratings.get(CORRECTION)
        reasons = [reason for reason, applies in (
            ("down-voted", rating is not None and rating.value == "down"),
            ("corrected", correction is not None),
            ("declined", tags.get("refused") == "true"),
            ("router unsure", float(tags.get("route_confidence", 1.0)) < params.router.confidence_threshold),
            ("weak retrieval", float(tags.get("top_score", 1.0)) < params.feedback.weak_retrieval_score),
            (f"accepted, but not harvested: {tags.get(HARVEST_ERROR_TAG)}", HARVEST_ERROR_TAG in tags),
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
        served_chunks(trace))


@dataclass(frozen=True)
class Acceptance:
    """What a reviewer accepts an answer's question as: a golden question or a training example (not
    both: evaluation questions stay held out from training), with the documents that answer it, the
    right answer citing them as [doc-id], and (for a golden question) the key facts a right answer
    states. `answerable=False`: the assistant should decline it (no documents, no answer: the
    configured refusal sentence is the answer). `intent` overrides the route the question took."""

    golden: bool = False
    training: bool = False
    doc_ids: tuple[str, ...] = ()
    answer: str = ""
    key_facts: tuple[str, ...] = ()
    answerable: bool = True
    intent: str = ""

    def __post_init__(self) -> None:
        if self.golden == self.training:
            raise ReviewError("accept as --golden or as --training (a golden question stays out of the training data, "
                              "so not both), or --reject")
        if not self.answerable:
            if self.doc_ids or self.answer.strip() or self.key_facts:
                raise ReviewError("an unanswerable item has no documents, answer or key facts (its answer is the "
                                  "refusal sentence); drop --doc-id, --answer and --key-fact, or --unanswerable")
            return
        if not (self.doc_ids and self.answer.strip()):
            raise ReviewError("an accepted item needs the documents that answer it (--doc-id, repeatable) and the "
                              "right answer (--answer), citing them as [doc-id]; or --unanswerable")
        uncited = [d for d in self.doc_ids if f"[{d}]" not in self.answer]
        if uncited:
            raise ReviewError(f"the answer must cite its documents as [doc-id]; it does not cite {', '.join(uncited)}")
        if self.golden and not self.key_facts:
            raise ReviewError("a golden question needs the key facts a right answer states (--key-fact, repeatable), "
                              "what its evaluation checks")
        missing = [f for f in self.key_facts if f.lower() not in self.answer.lower()]
        if missing:
            raise ReviewError(f"key facts must appear in the right answer; {missing} do not")

    def tags(self) -> dict[str, str]:
        return {"review.as": ",".join(k for k, v in (("golden", self.golden), ("training", self.training)) if v),
                "review.doc_ids": json.dumps(list(self.doc_ids)), "review.answer": self.answer,
                "review.key_facts": json.dumps(list(self.key_facts)), "review.answerable": str(self.answerable).lower(),
                "review.intent": self.intent}


def decide(trace_id: str, reviewer: str, accepted: Acceptance | None, note: str = "") -> dict[str, str]:
    """Record a reviewer's decision on the trace: `accepted` (None: rejected). A training example is
    the served context with the right answer, so its documents must be among what was retrieved.
    The tags written."""
    if not reviewer.strip():
        raise ReviewError("name the reviewer (--reviewer): a decision is recorded with who made it")
    tags = {DECISION_TAG: "rejected" if accepted is None else "accepted", "review.reviewer": reviewer,
            "review.at": datetime.now(UTC).isoformat(timespec="seconds"), "review.note": note}
    try:
        trace = mlflow.get_trace(trace_id, silent=True) or _unknown(trace_id)
        if accepted is not None:
            if accepted.training and accepted.answerable:
                served = {c["doc_id"] for c in served_chunks(trace)}
                if not set(accepted.doc_ids) <= served:
                    raise ReviewError(
                        f"a training example answers from what was retrieved ({', '.join(sorted(served)) or 'nothing'}),"
                        f" and {', '.join(sorted(set(accepted.doc_ids) - served))} was not; accept it as --golden only "
                        f"(the golden question then measures the retrieval miss)")
            tags |= accepted.tags()
        for key, value in tags.items():
            mlflow.set_trace_tag(trace_id, key, value)
        if HARVEST_ERROR_TAG in trace.info.tags:  # decided again: the next harvest takes it
            mlflow.delete_trace_tag(trace_id, HARVEST_ERROR_TAG)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            _unknown(trace_id)
        raise
    return tags


def served_chunks(trace) -> list[dict]:
    """The chunks the answer was given (chunk_id, doc_id, score, text), from its retrieve span."""
    return next((list(s.outputs or []) for s in trace.data.spans if s.name == "retrieve"), [])


def _unknown(trace_id: str) -> None:
    raise UnknownTrace(f"no trace {trace_id!r} in the tracking store; `ragops feedback review` lists the trace ids")


def accepted_items(limit: int = 1000) -> list[Accepted]:
    """Accepted decisions not harvested yet, oldest first (as harvest_rows takes them)."""
    traces = mlflow.search_traces(filter_string=f"tag.`{DECISION_TAG}` = 'accepted' AND tag.`{HARVEST_TAG}` IS NULL "
                                                f"AND tag.`{HARVEST_ERROR_TAG}` IS NULL",
                                  order_by=["timestamp_ms ASC"], max_results=limit, return_type="list",
                                  include_spans=True)
    items = []
    for trace in traces:
        tags, root = trace.info.tags, next(s for s in trace.data.spans if s.name == "answer")
        kinds = tags.get("review.as", "").split(",")
        items.append(Accepted(
            trace_id=trace.info.trace_id, question=root.inputs["question"], route=tags.get("route", ""),
            bundle_version=tags.get("bundle_version", ""), reviewer=tags["review.reviewer"],
            reviewed_at=tags["review.at"], as_golden="golden" in kinds, as_training="training" in kinds,
            doc_ids=tuple(json.loads(tags.get("review.doc_ids", "[]"))), answer=tags.get("review.answer", ""),
            key_facts=tuple(json.loads(tags.get("review.key_facts", "[]"))),
            answerable=tags.get("review.answerable", "true") == "true", intent=tags.get("review.intent", ""),
            chunks=tuple(served_chunks(trace))))
    return items


def mark_harvested(trace_ids: list[str], data_versions: dict[str, str]) -> None:
    """Tag harvested traces with the data versions that now hold them: lineage from a trace to the
    data, and what keeps them out of the next harvest."""
    version = json.dumps({name: md5 for name, md5 in data_versions.items() if name in HARVESTED}, sort_keys=True)
    for trace_id in trace_ids:
        mlflow.set_trace_tag(trace_id, HARVEST_TAG, version)


def mark_left_out(reasons: dict[str, str]) -> None:
    """Tag each trace (id -> why) as accepted but not harvested: back in the review queue with why,
    and out of the next harvest until decided again."""
    for trace_id, why in reasons.items():
        mlflow.set_trace_tag(trace_id, HARVEST_ERROR_TAG, why)
