"""Retrieval: hybrid (BM25 + vector), vector-only or BM25-only search with metadata filters.

    >>> hits = search(client, "Catalog", "cheap kettle", vector, k=3, alpha=0.5,
    ...               filters=SearchFilters.parse({"category": "kettles", "stock": {"gt": 0}},
    ...                                           {"category": "text", "stock": "int"}))  # doctest: +SKIP
    >>> hits[0].doc_id  # doctest: +SKIP
    'p-070'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import weaviate
from weaviate.classes.query import Filter, MetadataQuery

from components.config import FIELD_VALUE_NAMES, fits_field_type
from components.index.store import consistent

SearchMode = Literal["hybrid", "vector", "bm25"]
SEARCH_MODES: tuple[SearchMode, ...] = ("hybrid", "vector", "bm25")


@dataclass(frozen=True)
class Retrieved:
    doc_id: str
    text: str
    score: float
    chunk_id: str = ""  # the chunk's object id in its collection version


FILTER_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte")


class FilterError(ValueError):
    """A filter the domain's fields cannot answer; the message names the field and the fix."""


@dataclass(frozen=True)
class SearchFilters:
    """Conditions on the domain's metadata fields (index.metadata_fields), all of which must hold:
    (field, operator, value). Chunks of documents without the field never match a condition on it."""

    conditions: tuple[tuple[str, str, Any], ...] = ()

    @classmethod
    def parse(cls, spec: Mapping[str, Any], fields: Mapping[str, str], where: str = "filters") -> SearchFilters:
        """From {"category": "kettles", "stock": {"gt": 0}, "price": {"lte": 50}}: a value is
        equality, an object maps operators (FILTER_OPERATORS) to values."""
        conditions = []
        for name, condition in spec.items():
            if name not in fields:
                raise FilterError(f"{where}.{name}: not a field this index can filter on (index.metadata_fields: "
                                  f"{', '.join(fields) or 'none'})")
            for op, value in (condition.items() if isinstance(condition, dict) else [("eq", condition)]):
                if op not in FILTER_OPERATORS:
                    raise FilterError(f"{where}.{name}: unknown operator {op!r}; use one of {', '.join(FILTER_OPERATORS)}")
                kind = fields[name]
                if not fits_field_type(kind, value):
                    raise FilterError(f"{where}.{name}: {op} needs {FIELD_VALUE_NAMES[kind]}, got {type(value).__name__} {value!r}")
                if kind in ("text", "bool") and op not in ("eq", "ne"):
                    raise FilterError(f"{where}.{name}: a {kind} field takes eq or ne, not {op}")
                conditions.append((name, op, value))
        return cls(tuple(conditions))

    def to_weaviate(self):
        parts = []
        for name, op, value in self.conditions:
            prop = Filter.by_property(name)
            parts.append({"eq": prop.equal, "ne": prop.not_equal, "gt": prop.greater_than,
                          "gte": prop.greater_or_equal, "lt": prop.less_than, "lte": prop.less_or_equal}[op](value))
            if op == "ne":  # Weaviate's not-equal matches a missing value; a condition never does here
                parts.append(Filter.by_property(name).is_none(False))
        return Filter.all_of(parts) if len(parts) > 1 else (parts[0] if parts else None)


def search(client: weaviate.WeaviateClient, collection: str, query: str, vector: np.ndarray, k: int,
           alpha: float, mode: SearchMode = "hybrid", filters: SearchFilters | None = None,
           consistency: str = "ONE") -> list[Retrieved]:
    """Top-k chunks of `collection` (a version or the alias), asking `consistency` replicas
    (index.consistency_level). alpha weighs vector against BM25 in hybrid mode (0 = BM25 only, 1 =
    vector only)."""
    query_api = consistent(client, collection, consistency).query
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
    return [Retrieved(o.properties["doc_id"], o.properties["text"], float(s or 0.0), str(o.uuid))
            for o, s in zip(result.objects, scores)]
