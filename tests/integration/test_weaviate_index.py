"""The index against a real embedded Weaviate server: versions, alias moves, hybrid search."""

import pytest

from components.config import IndexConfig
from components.index.build import build_index_version
from components.index.chunking import chunk_document
from components.index.embedding import embed_texts, load_embedder
from components.index.store import (hybrid_search, list_versions, live_collection, point_alias, prune_versions)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedder(encoder_path):
    return load_embedder(encoder_path)


def test_build_search_move_alias_and_prune(weaviate_client, curated_docs, embedder):
    config = IndexConfig(alias="TestCatalog", keep_versions=2)
    first = build_index_version(weaviate_client, curated_docs, embedder, config, show_progress=False)
    expected_chunks = sum(len(chunk_document(d, config)) for d in curated_docs)
    assert first.collection == "TestCatalog_v1"
    assert first.chunks == expected_chunks == len(weaviate_client.collections.get(first.collection))

    product = next(d for d in curated_docs if d["id"].startswith("p-"))
    question = f"How much does the {product['name']} cost?"
    hits = hybrid_search(weaviate_client, first.collection, question, embed_texts(embedder, [question], 8)[0],
                         k=3, alpha=0.5)
    assert hits[0].doc_id == product["id"]

    assert point_alias(weaviate_client, config.alias, first.collection) is None
    assert live_collection(weaviate_client, config.alias) == first.collection
    # Serving reads the alias name; it resolves to the versioned collection.
    via_alias = hybrid_search(weaviate_client, config.alias, question, embed_texts(embedder, [question], 8)[0], 3, 0.5)
    assert [h.doc_id for h in via_alias] == [h.doc_id for h in hits]

    second = build_index_version(weaviate_client, curated_docs[:-1], embedder, config, show_progress=False)
    third = build_index_version(weaviate_client, curated_docs, embedder, config, show_progress=False)
    assert (second.collection, third.collection) == ("TestCatalog_v2", "TestCatalog_v3")
    assert second.documents == len(curated_docs) - 1
    # Chunk ids are content-addressed: the same documents give the same object ids.
    ids = lambda name: {str(o.uuid) for o in weaviate_client.collections.get(name).iterator()}  # noqa: E731
    assert ids(first.collection) == ids(third.collection)

    assert point_alias(weaviate_client, config.alias, third.collection) == first.collection
    deleted = prune_versions(weaviate_client, config.alias, keep=config.keep_versions)
    assert deleted == ["TestCatalog_v1"]
    assert list_versions(weaviate_client, config.alias) == ["TestCatalog_v2", "TestCatalog_v3"]
    assert live_collection(weaviate_client, config.alias) == third.collection


def test_prune_never_deletes_the_live_version(weaviate_client, curated_docs, embedder):
    config = IndexConfig(alias="PruneCatalog", keep_versions=2)
    versions = [build_index_version(weaviate_client, curated_docs[:3], embedder, config, show_progress=False)
                for _ in range(3)]
    point_alias(weaviate_client, config.alias, versions[0].collection)  # an old version is live (rolled back)
    prune_versions(weaviate_client, config.alias, keep=config.keep_versions)
    assert versions[0].collection in list_versions(weaviate_client, config.alias)
    assert live_collection(weaviate_client, config.alias) == versions[0].collection
