"""Accepted review items into raw data rows: the harvest's data side.

A reviewer's accepted item (components/registry/review_queue.py) becomes a golden question or a
generator training example, scrubbed of personal data (components/data/pii.py) and carrying its
provenance (trace id, bundle version, reviewer, when). The rows go to `<raw_dir>/harvested/`
(golden.jsonl, generator.jsonl), which curation reads after the raw files of the same name: the
curate stage then versions them with DVC like any other data, and validation checks them (cited
documents exist, no duplicate golden question, no golden question in training data).

A training example is what the assistant was given (the served chunks, in their order, as the
index holds them) with the reviewer's answer; an unanswerable item's answer is the configured
refusal sentence. The customer's question is scrubbed whole; in the reviewer's answer, what the
served documents state themselves (the store's hotline) stays.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from components.config import Params
from components.data.curate import HARVEST_DIR, HARVESTED
from components.data.pii import scrub


@dataclass(frozen=True)
class Accepted:
    """One accepted review item, as the review queue reads it from its trace."""

    trace_id: str
    question: str
    route: str
    bundle_version: str
    reviewer: str
    reviewed_at: str
    as_golden: bool
    as_training: bool
    doc_ids: tuple[str, ...]
    answer: str
    key_facts: tuple[str, ...]
    answerable: bool
    intent: str = ""  # the reviewer's; "" = the route it took
    chunks: tuple[dict, ...] = ()  # served: doc_id, text (and chunk_id, score)


@dataclass
class Harvest:
    rows: dict[str, list[dict]] = field(default_factory=lambda: {name: [] for name in HARVESTED})
    scrubbed: Counter = field(default_factory=Counter)  # entity type -> occurrences replaced
    trace_ids: list[str] = field(default_factory=list)


def harvest_rows(items: list[Accepted], params: Params) -> Harvest:
    """Golden and generator rows for `items` (ids from their trace ids: a re-harvest is a duplicate
    id, which validation names)."""
    regions = params.feedback.phone_regions
    harvest = Harvest()
    for item in items:
        texts, served = {}, [c["text"] for c in item.chunks]
        for name, text in (("question", item.question), ("answer", item.answer)):
            clean = scrub(text, regions, published=served if name == "answer" else ())
            texts[name] = clean.text
            harvest.scrubbed.update(clean.found)
        answer = texts["answer"] if item.answerable else params.generator.refusal_reply
        provenance = {"trace_id": item.trace_id, "bundle_version": item.bundle_version, "reviewer": item.reviewer,
                      "reviewed_at": item.reviewed_at}
        short = item.trace_id.removeprefix("tr-")[:16]
        if item.as_golden:
            harvest.rows["golden.jsonl"].append({
                "id": f"h-{short}", "question": texts["question"], "intent": item.intent or item.route,
                "gold_doc_ids": list(item.doc_ids), "key_facts": list(item.key_facts), "answer": answer,
                "answerable": item.answerable, "provenance": provenance})
        if item.as_training:
            context = [{"doc_id": c["doc_id"], "text": c["text"]} for c in item.chunks]  # documents, as indexed
            row = {"id": f"hg-{short}", "question": texts["question"], "context": context, "answer": answer,
                   "answerable": item.answerable, "provenance": provenance}
            if not item.answerable and params.generator.refusal_check:
                row["check_only"] = True  # as curated unanswerable examples: they train the refusal check
            harvest.rows["generator.jsonl"].append(row)
        harvest.trace_ids.append(item.trace_id)
    return harvest


def append_harvest(raw_path: Path, harvest: Harvest) -> dict[Path, bytes | None]:
    """Append the rows to `<raw_path>/harvested/`; returns each file's previous bytes (None: it did
    not exist), for `restore_files` when what they make fails validation."""
    folder = raw_path / HARVEST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    before = {}
    for name, rows in harvest.rows.items():
        path = folder / name
        before[path] = path.read_bytes() if path.exists() else None
        if rows:
            with path.open("a", encoding="utf-8") as out:
                out.writelines(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    return before


def restore_files(before: dict[Path, bytes | None]) -> None:
    for path, content in before.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)


def screen(items: list[Accepted], curated_path: Path, intents: tuple[str, ...]) -> dict[str, str]:
    """Per trace id, why its item cannot join the data as the reviewer accepted it (what validation
    would stop the whole harvest for): an unknown document, an intent the router does not know, a
    golden question the golden set or the training data already holds. The others are fine."""
    from components.data.curate import leaked_into, normalize_question, read_jsonl

    known = {row["id"] for row in read_jsonl(curated_path / "documents.jsonl")}
    golden = {normalize_question(row["question"]): row["id"] for row in read_jsonl(curated_path / "golden.jsonl")}
    training = {name: [row.get("question") or row.get("text") for row in read_jsonl(curated_path / name)]
                for name in ("generator.jsonl", "router.jsonl")}
    problems = {}
    for item in items:
        unknown = [d for d in item.doc_ids if d not in known]
        intent = item.intent or item.route
        leaked = leaked_into([item.question], training)[0] if item.as_golden else ""
        twin = golden.get(normalize_question(item.question)) if item.as_golden else None
        why = (f"documents {unknown} are not in the curated documents" if unknown else
               f"intent {intent!r} is not one of router.intents {list(intents)}; decide again with --intent"
               if item.as_golden and intent not in intents else
               f"the golden set already asks it (id {twin})" if twin else
               f"its question is in the training data ({leaked}): a golden question must be held out" if leaked else "")
        if why:
            problems[item.trace_id] = why
        elif item.as_golden:  # two reviewers accepting the same question in one batch
            golden[normalize_question(item.question)] = f"h- of trace {item.trace_id}"
    return problems
