"""Harvested feedback as data: personal data scrubbed, rows with provenance that curation reads
and Great Expectations checks, and the items that cannot join the data left out with why. (The
whole loop from a served answer to a retrain: tests/e2e/test_feedback_loop.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from components.config import Params
from components.data.curate import CurationError, curate, read_jsonl
from components.data.harvest import Accepted, append_harvest, harvest_rows, restore_files, screen
from components.data.pii import scrub
from components.data.validation import load_curated, validate_frames

pytestmark = pytest.mark.data
PARAMS = Params()


def test_email_phone_and_card_numbers_are_replaced_and_prices_and_ids_kept():
    text = ("Mail ana.lopez@example.com or call +1 415-555-0132 / 020 7946 0958; card 4111 1111 1111 1111. "
            "The kettle p-001 cost 39.99 USD on order 1234-5678, ref 4111111111111112.")
    clean = scrub(text)
    assert clean.text == ("Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER> / <PHONE_NUMBER>; card <CREDIT_CARD>. "
                          "The kettle p-001 cost 39.99 USD on order 1234-5678, ref 4111111111111112.")  # not Luhn-valid
    assert clean.found == ["CREDIT_CARD", "EMAIL_ADDRESS", "PHONE_NUMBER", "PHONE_NUMBER"]
    assert scrub("How much is the Aurora ANC Headphones Edge?").found == []


def _item(trace: str, question: str, doc: dict, **kw) -> Accepted:
    fields = {"route": "catalog", "bundle_version": "3", "reviewer": "ana", "reviewed_at": "2026-12-04T10:00:00+00:00",
              "as_golden": True, "as_training": False, "doc_ids": (doc["id"],),
              "answer": f"It is listed at 12 USD [{doc['id']}]. Call 212-555-0199 for more.", "key_facts": ("12 USD",),
              "answerable": True, "chunks": ({"doc_id": doc["id"], "text": doc["text"][:200], "score": 0.8},)}
    return Accepted(trace, question, **{**fields, **kw})


@pytest.fixture(scope="module")
def workspace(project_root, tmp_path_factory) -> tuple[Path, Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    shutil.copytree(project_root / "data" / "raw", raw, dirs_exist_ok=True)
    out = tmp_path_factory.mktemp("curated")
    curate(raw, out, PARAMS.data, PARAMS.index.metadata_fields)
    return raw, out, read_jsonl(out / "documents.jsonl")[0]


def test_accepted_items_become_curated_rows_with_provenance_that_validate(workspace, tmp_path):
    raw, out, doc = workspace
    items = [_item("tr-aaaa0001", "Is the thing ana@example.com asked about 12 USD?", doc),
             # the store's own hotline, stated by the served document, stays in the answer
             _item("tr-aaaa0003", "Is it 12 USD, asks ana@example.com?", doc, as_golden=False, as_training=True,
                   chunks=({"doc_id": doc["id"], "text": "Hotline: 212-555-0199.", "score": 0.8},)),
             _item("tr-aaaa0002", "Do you sell garden gnomes?", doc, as_golden=False, as_training=True, doc_ids=(), answer="",
                   key_facts=(), answerable=False, intent="")]
    assert screen(items, out, PARAMS.router.intents) == {}
    harvest = harvest_rows(items, PARAMS)
    before = append_harvest(raw, harvest)
    try:
        curate(raw, tmp_path, PARAMS.data, PARAMS.index.metadata_fields)
        goldens = {r["id"]: r for r in read_jsonl(tmp_path / "golden.jsonl")}
        golden = goldens["h-aaaa0001"]
        generator = {r["id"]: r for r in read_jsonl(tmp_path / "generator.jsonl")}
        assert golden["question"] == "Is the thing <EMAIL_ADDRESS> asked about 12 USD?"
        assert golden["answer"] == f"It is listed at 12 USD [{doc['id']}]. Call <PHONE_NUMBER> for more."
        assert golden["provenance"] == {"trace_id": "tr-aaaa0001", "bundle_version": "3", "reviewer": "ana",
                                        "reviewed_at": "2026-12-04T10:00:00+00:00"}
        assert (golden["gold_doc_ids"], golden["key_facts"], golden["intent"]) == ([doc["id"]], ["12 USD"], "catalog")
        declined = generator["hg-aaaa0002"]
        assert (declined["answer"], declined["answerable"], declined["check_only"]) == (
            PARAMS.generator.refusal_reply, False, True)
        trained = generator["hg-aaaa0003"]
        assert trained["context"] == [{"doc_id": doc["id"], "text": "Hotline: 212-555-0199."}]
        assert trained["answer"] == f"It is listed at 12 USD [{doc['id']}]. Call 212-555-0199 for more."
        assert trained["question"] == "Is it 12 USD, asks <EMAIL_ADDRESS>?"
        assert "h-aaaa0003" not in goldens and "hg-aaaa0001" not in generator
        assert harvest.scrubbed == {"EMAIL_ADDRESS": 2, "PHONE_NUMBER": 1}
        assert validate_frames(load_curated(tmp_path), PARAMS, tmp_path / "docs").success
    finally:
        restore_files(before)
    assert not (raw / "harvested" / "golden.jsonl").exists()


def test_what_would_break_the_data_is_left_out_with_why_and_validation_holds_the_rest(workspace, tmp_path):
    raw, out, doc = workspace
    golden = read_jsonl(out / "golden.jsonl")[0]
    trained = read_jsonl(out / "generator.jsonl")[0]["question"]
    items = [_item("tr-b1", golden["question"].upper(), doc), _item("tr-b2", trained, doc),
             _item("tr-b3", "Where is the unicorn?", doc, doc_ids=("p-nope",), answer="Here [p-nope]."),
             _item("tr-b4", "Which colour is it?", doc, intent="weather"),
             _item("tr-b5", "Is it new?", doc), _item("tr-b6", "is it NEW", doc)]
    why = screen(items, out, PARAMS.router.intents)
    assert why == {"tr-b1": f"the golden set already asks it (id {golden['id']})",
                   "tr-b2": "its question is in the training data (generator.jsonl): a golden question must be held out",
                   "tr-b3": "documents ['p-nope'] are not in the curated documents",
                   "tr-b4": f"intent 'weather' is not one of router.intents {list(PARAMS.router.intents)}; decide again "
                            f"with --intent",
                   "tr-b6": "the golden set already asks it (id h- of trace tr-b5)"}
    # Let through anyway, each is stopped: curation names the harvested record, GE the duplicate.
    before = append_harvest(raw, harvest_rows([items[1]], PARAMS))
    try:
        with pytest.raises(CurationError, match=r"harvested/golden.jsonl:1 \(id h-b2\): question .* also appears in "
                                                r"generator.jsonl"):
            curate(raw, tmp_path, PARAMS.data, PARAMS.index.metadata_fields)
    finally:
        restore_files(before)
    before = append_harvest(raw, harvest_rows([items[0]], PARAMS))
    try:
        curate(raw, tmp_path, PARAMS.data, PARAMS.index.metadata_fields)
        report = validate_frames(load_curated(tmp_path), PARAMS, tmp_path / "docs")
        assert [(f["dataset"], f["column"], f["ids"], f["values"]) for f in report.failures] == [
            ("golden.jsonl#checks", "duplicate_of", ["h-b1"], [golden["id"]])]
    finally:
        restore_files(before)
    assert json.loads((out / "golden.jsonl").read_text().splitlines()[0])["id"] == golden["id"]
