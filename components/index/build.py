"""Build a new index version from curated documents (never touching the live one).

    >>> with connect_weaviate(settings) as client:  # doctest: +SKIP
    ...     built = build_index_version(client, docs, embedder, params.index)
    >>> built.collection  # doctest: +SKIP
    'Catalog_v4'
"""

from __future__ import annotations

from dataclasses import dataclass

import weaviate

from components.config import IndexConfig
from components.index.chunking import chunk_document
from components.index.embedding import Embedder, embed_texts
from components.index.store import check_version, create_version, next_version_name


@dataclass(frozen=True)
class IndexVersion:
    collection: str
    documents: int
    chunks: int


def build_index_version(client: weaviate.WeaviateClient, docs: list[dict], embedder: Embedder,
                        config: IndexConfig, show_progress: bool = True) -> IndexVersion:
    chunks = [c for doc in docs for c in chunk_document(doc, config)]
    vectors = embed_texts(embedder, [c.text for c in chunks], config.embed_batch_size, show_progress)
    name = next_version_name(client, config.alias)
    written = create_version(client, name, chunks, vectors, {d["id"]: d for d in docs})
    check_version(client, name, expected=len(chunks), probe_vector=vectors[0])
    return IndexVersion(collection=name, documents=len(docs), chunks=written)
