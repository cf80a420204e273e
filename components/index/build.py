"""Build a new index version from curated documents, incrementally, never touching the live one.

Only documents that are new or changed since the base version (the live one) are chunked and
embedded; the objects of unchanged documents are copied with their vectors; deleted documents
are left out. The new version is checked against its ledger before it is sealed, and it goes
live only when something moves the alias (promotion). Nothing changed: no new version.

    >>> with connect_weaviate(settings) as client:  # doctest: +SKIP
    ...     built = build_index_version(client, docs, embedder, params.index, encoder=params.models.encoder)
    >>> built.collection, built.plan  # doctest: +SKIP
    ('Catalog_v4', '1 added, 2 changed, 0 deleted, 329 unchanged')
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import weaviate
from rich.progress import track

from components.config import IndexConfig
from components.index.chunking import Chunk, chunk_document
from components.index.embedding import Embedder, embed_texts
from components.index.ledger import Ledger, LedgerEntry, build_fingerprint, plan_changes
from components.index.search import search
from components.index.store import (StoredObject, WeaviateIndexError, chunk_counts, chunk_properties, create_collection,
                                    delete_version, discard_unsealed, list_versions, live_collection,
                                    next_version_name, read_index_ledger, read_objects, write_index_ledger, write_objects)

PROBES = 5


@dataclass(frozen=True)
class IndexVersion:
    collection: str
    documents: int
    chunks: int
    new: bool = True  # False: nothing changed since `base`, which is reused as is
    base: str | None = None
    plan: str = ""
    embedded_chunks: int = 0
    copied_chunks: int = 0
    changed_docs: tuple[str, ...] = ()  # added or changed document ids
    deleted_docs: tuple[str, ...] = ()
    seconds: float = 0.0


def base_version(client: weaviate.WeaviateClient, alias: str) -> tuple[str | None, Ledger | None]:
    """The version to diff against: the live one, else the newest sealed one."""
    live = live_collection(client, alias)
    for name in ([live] if live else []) + list(reversed(list_versions(client, alias))):
        ledger = read_index_ledger(client, alias, name)
        if ledger is not None:
            return name, ledger
    return None, None


def check_version(client: weaviate.WeaviateClient, ledger: Ledger, probes: list[StoredObject]) -> None:
    """Refuse a version whose objects disagree with its ledger or whose search misses known chunks."""
    name = ledger.collection
    count = len(client.collections.get(name))
    if count != ledger.chunk_count:
        raise WeaviateIndexError(f"{name} holds {count} objects, its ledger expects {ledger.chunk_count}; not going live")
    counts = chunk_counts(client, name)
    wrong = {d: (counts.get(d, 0), len(e.chunk_ids)) for d, e in ledger.documents.items()
             if counts.get(d, 0) != len(e.chunk_ids)}
    extra = set(counts) - set(ledger.documents)
    if wrong or extra:
        first = next(iter(wrong.items()), None)
        raise WeaviateIndexError(f"{name}: per-document chunk counts disagree with the ledger ({len(wrong)} documents, "
                                 f"first {first}; {len(extra)} documents not in the ledger); not going live")
    for probe in probes:
        hits = search(client, name, probe.properties["text"], np.asarray(probe.vector), k=3, alpha=0.5)
        if probe.properties["doc_id"] not in {h.doc_id for h in hits}:
            raise WeaviateIndexError(f"{name}: a probe query for document {probe.properties['doc_id']} did not find it "
                                     f"({[h.doc_id for h in hits]}); not going live")


def _progress(objects: Iterator[StoredObject], total: int, show: bool) -> Iterator[StoredObject]:
    return track(objects, total=total, description=f"writing {total} objects") if show and total else objects


def _sampled(objects: Iterator[StoredObject], sample: list[StoredObject], n: int) -> Iterator[StoredObject]:
    """Pass objects through, keeping the first n in `sample` (probes when nothing was embedded)."""
    for obj in objects:
        if len(sample) < n:
            sample.append(obj)
        yield obj


def build_index_version(client: weaviate.WeaviateClient, docs: list[dict], embedder: Embedder,
                        config: IndexConfig, encoder: str, show_progress: bool = True) -> IndexVersion:
    tic = time.perf_counter()
    discard_unsealed(client, config.alias)
    base, base_ledger = base_version(client, config.alias)
    plan = plan_changes(base_ledger, docs, config, encoder)
    if plan.is_noop:
        return IndexVersion(base, len(docs), base_ledger.chunk_count, new=False, base=base, plan=plan.describe(),
                            seconds=time.perf_counter() - tic)
    by_id = {d["id"]: d for d in docs}
    chunks: list[Chunk] = [c for doc_id in plan.to_embed for c in chunk_document(by_id[doc_id], config)]
    vectors = embed_texts(embedder, [c.text for c in chunks], config.embed_batch_size, show_progress)
    fresh = [StoredObject(c.uuid, chunk_properties(c, by_id[c.doc_id], config.metadata_fields), v.tolist()) for c, v in zip(chunks, vectors)]
    entries = {doc_id: LedgerEntry(plan.fingerprints[doc_id], tuple(c.uuid for c in chunks if c.doc_id == doc_id))
               for doc_id in plan.to_embed}
    copied_ids = set(plan.unchanged)
    entries.update({doc_id: base_ledger.documents[doc_id] for doc_id in plan.unchanged})
    copied_total = sum(len(base_ledger.documents[d].chunk_ids) for d in plan.unchanged) if base_ledger else 0

    name = next_version_name(client, config.alias)
    ledger = Ledger(name, build_fingerprint(config, encoder), dict(sorted(entries.items())))
    create_collection(client, name, config.vector_index, config.metadata_fields, config.replication_factor)
    try:
        first_copied: list[StoredObject] = []
        copied = _sampled(read_objects(client, base, copied_ids), first_copied, PROBES) if copied_ids else iter(())
        written = write_objects(client, name, _progress(itertools.chain(fresh, copied), len(fresh) + copied_total,
                                                        show_progress), config.replication_factor)
        check_version(client, ledger, (fresh[:PROBES] or first_copied)[:PROBES])
        write_index_ledger(client, config.alias, ledger, config.replication_factor)
    except Exception:
        # An unsealed version is never served; remove it now rather than at the next build.
        delete_version(client, config.alias, name)
        raise
    return IndexVersion(name, len(docs), written, new=True, base=base, plan=plan.describe(),
                        embedded_chunks=len(fresh), copied_chunks=written - len(fresh),
                        changed_docs=tuple(plan.to_embed), deleted_docs=tuple(plan.deleted),
                        seconds=time.perf_counter() - tic)
