"""Retrieval: hybrid (BM25 + vector), vector-only or BM25-only search with metadata filters.

    >>> hits = search(client, "Catalog", "cheap kettle", vector, k=3, alpha=0.5,
    ...               filters=SearchFilters(category="kettles", in_stock=True))  # doctest: +SKIP
    >>> hits[0].doc_id  # doctest: +SKIP
    'p-070'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import weaviate
from weaviate.classes.query import Filter, MetadataQuery

SearchMode = Literal["hybrid", "vector", "bm25"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "bm25")


@dataclass(frozen=True)
class Retrieved:
    doc_id: str
    text: str
    score: float


@dataclass(frozen=True)
class SearchFilters:
    category: str | None = None
    in_stock: bool = False  # only products with stock > 0 (documents without stock are excluded)

    def to_weaviate(self):
        parts = []
        if self.category:
            parts.append(Filter.by_property("category").equal(self.category))
        if self.in_stock:
            parts.append(Filter.by_property("stock").greater_than(0))
        return Filter.all_of(parts) if len(parts) > 1 else (parts[0] if parts else None)


def search(client: weaviate.WeaviateClient, collection: str, query: str, vector: np.ndarray, k: int,
           alpha: float, mode: SearchMode = "hybrid", filters: SearchFilters | None = None) -> list[Retrieved]:
    """Top-k chunks of `collection` (a version or the alias). alpha weighs vector against BM25 in
    hybrid mode (0 = BM25 only, 1 = vector only)."""
    query_api = client.collections.get(collection).query
    common = {"limit": k, "filters": filters.to_weaviate() if filters else None,
              "return_properties": ["doc_id", "text"]}
    if mode == "hybrid":
        result = query_api.hybrid(query=query, vector=vector.tolist(), alpha=alpha,
                                  return_metadata=MetadataQuery(score=True), **common)
        scores = [o.metadata.score for o in result.objects]
    elif mode == "vector":
        result = query_api.near_vector(vector.tolist(), return_metadata=MetadataQuery(distance=True), **common)
        scores = [1.0 - (o.metadata.distance or 0.0) for o in result.objects]
    elif mode == "bm25":
        result = query_api.bm25(query=query, return_metadata=MetadataQuery(score=True), **common)
        scores = [o.metadata.score for o in result.objects]
    else:
        raise ValueError(f"unknown search mode {mode!r}; use one of {SEARCH_MODES}")
    return [Retrieved(o.properties["doc_id"], o.properties["text"], float(s or 0.0))
            for o, s in zip(result.objects, scores)]
