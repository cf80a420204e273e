"""Weaviate: connection, versioned collections, the serving alias, hybrid search.

Each build writes a new collection `<alias>_v<n>`; serving reads the alias, which moves in
one step when a version goes live. Nothing here ever edits the live collection.

    >>> from components.config import Settings
    >>> with connect_weaviate(Settings()) as client:  # doctest: +SKIP
    ...     live_collection(client, "Catalog")
    'Catalog_v3'
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import weaviate
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import MetadataQuery

from components.config import Settings
from components.index.chunking import Chunk

PROPERTIES = (
    Property(name="doc_id", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="chunk_index", data_type=DataType.INT),
    Property(name="text", data_type=DataType.TEXT),
    Property(name="title", data_type=DataType.TEXT),
    Property(name="category", data_type=DataType.TEXT),
    Property(name="doc_hash", data_type=DataType.TEXT),
    Property(name="updated_at", data_type=DataType.TEXT),
    Property(name="price", data_type=DataType.NUMBER),
    Property(name="stock", data_type=DataType.INT),
)


class IndexError_(RuntimeError):
    """The index cannot be built, checked or served; the message says what to do."""


@dataclass(frozen=True)
class Retrieved:
    doc_id: str
    text: str
    score: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def connect_weaviate(settings: Settings) -> Iterator[weaviate.WeaviateClient]:
    """A client for RAGOPS_WEAVIATE_URL, or for an embedded server started from the binary
    that infra/weaviate/provision.py built (stopped again when the block exits)."""
    timeout = AdditionalConfig(timeout=Timeout(init=60, query=60, insert=180))
    if settings.weaviate_url:
        url = urlparse(settings.weaviate_url)
        grpc = urlparse(settings.weaviate_grpc_url or f"{url.scheme}://{url.hostname}:50051")
        auth = Auth.api_key(settings.weaviate_api_key.get_secret_value()) if settings.weaviate_api_key else None
        client = weaviate.connect_to_custom(
            http_host=url.hostname, http_port=url.port or (443 if url.scheme == "https" else 80),
            http_secure=url.scheme == "https", grpc_host=grpc.hostname, grpc_port=grpc.port or 50051,
            grpc_secure=grpc.scheme == "https", auth_credentials=auth, additional_config=timeout,
        )
    else:
        binary = settings.weaviate_binary_dir
        if not any(binary.glob(f"weaviate-v{settings.weaviate_version}-*")):
            raise IndexError_(
                f"no Weaviate {settings.weaviate_version} binary in {binary}; run `make setup` "
                f"(infra/weaviate/provision.py) or set RAGOPS_WEAVIATE_URL to an external server"
            )
        settings.weaviate_data_path.mkdir(parents=True, exist_ok=True)
        client = weaviate.connect_to_embedded(
            port=_free_port(), grpc_port=_free_port(), version=settings.weaviate_version,
            persistence_data_path=str(settings.weaviate_data_path), binary_path=str(binary),
            additional_config=timeout,
            # A fixed node name: Raft state on disk is keyed by it, and ports change per run.
            # Advertising loopback: on hosts with an IPv6 interface the server otherwise picks that
            # address and fails to format it ("too many colons in address").
            environment_variables={"DISABLE_TELEMETRY": "true", "CLUSTER_HOSTNAME": "ragops",
                                   "RAFT_JOIN": "ragops", "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
                                   "ENABLE_MODULES": "", "LOG_LEVEL": "error"},
        )
    try:
        yield client
    finally:
        client.close()


def version_name(alias: str, number: int) -> str:
    return f"{alias}_v{number}"


def list_versions(client: weaviate.WeaviateClient, alias: str) -> list[str]:
    """Existing versions of an alias, oldest first."""
    pattern = re.compile(rf"^{re.escape(alias)}_v(\d+)$")
    names = [n for n in client.collections.list_all(simple=True) if pattern.match(n)]
    return sorted(names, key=lambda n: int(pattern.match(n).group(1)))


def next_version_name(client: weaviate.WeaviateClient, alias: str) -> str:
    versions = list_versions(client, alias)
    last = int(versions[-1].rsplit("_v", 1)[1]) if versions else 0
    return version_name(alias, last + 1)


def create_version(client: weaviate.WeaviateClient, name: str, chunks: Sequence[Chunk],
                   vectors: np.ndarray, docs: dict[str, dict]) -> int:
    """Write chunks and their vectors into a new collection; returns the object count written."""
    if len(chunks) != len(vectors):
        raise IndexError_(f"{len(chunks)} chunks but {len(vectors)} vectors; the embedder dropped inputs")
    collection = client.collections.create(name, properties=list(PROPERTIES),
                                           vector_config=Configure.Vectors.self_provided())
    with collection.batch.fixed_size(batch_size=200) as batch:
        for chunk, vector in zip(chunks, vectors, strict=True):
            doc = docs[chunk.doc_id]
            batch.add_object(
                uuid=chunk.uuid, vector=vector.tolist(),
                properties={"doc_id": chunk.doc_id, "chunk_index": chunk.index, "text": chunk.text,
                            "title": str(doc.get("name", "")), "category": str(doc.get("category", "")),
                            "doc_hash": doc["content_hash"], "updated_at": str(doc.get("updated_at", "")),
                            "price": float(doc["price"]) if doc.get("price") is not None else None,
                            "stock": int(doc["stock"]) if doc.get("stock") is not None else None},
            )
    failed = collection.batch.failed_objects
    if failed:
        client.collections.delete(name)
        raise IndexError_(f"{len(failed)} objects failed to insert into {name} (first: {failed[0].message}); "
                          f"the new version was deleted, the live alias is unchanged")
    return len(collection)


def check_version(client: weaviate.WeaviateClient, name: str, expected: int, probe_vector: np.ndarray) -> None:
    """Refuse a version whose object count is off or whose search returns nothing."""
    collection = client.collections.get(name)
    count = len(collection)
    if count != expected:
        raise IndexError_(f"{name} holds {count} objects, expected {expected}; not going live")
    if not collection.query.near_vector(probe_vector.tolist(), limit=1).objects:
        raise IndexError_(f"{name}: a probe query returned nothing; not going live")


def live_collection(client: weaviate.WeaviateClient, alias: str) -> str | None:
    found = client.alias.get(alias_name=alias)
    return found.collection if found else None


def point_alias(client: weaviate.WeaviateClient, alias: str, collection: str) -> str | None:
    """Move the alias to `collection` in one step; returns the collection it pointed at before."""
    previous = live_collection(client, alias)
    if previous is None:
        client.alias.create(alias_name=alias, target_collection=collection)
    else:
        client.alias.update(alias_name=alias, new_target_collection=collection)
    return previous


def prune_versions(client: weaviate.WeaviateClient, alias: str, keep: int, protect: Sequence[str] = ()) -> list[str]:
    """Delete all but the newest `keep` versions, never the live one or any in `protect`."""
    live = live_collection(client, alias)
    versions = list_versions(client, alias)
    doomed = [v for v in versions[:-keep] if v != live and v not in protect]
    for name in doomed:
        client.collections.delete(name)
    return doomed


def hybrid_search(client: weaviate.WeaviateClient, collection: str, query: str, vector: np.ndarray,
                  k: int, alpha: float) -> list[Retrieved]:
    result = client.collections.get(collection).query.hybrid(
        query=query, vector=vector.tolist(), alpha=alpha, limit=k,
        return_metadata=MetadataQuery(score=True), return_properties=["doc_id", "text"],
    )
    return [Retrieved(o.properties["doc_id"], o.properties["text"], float(o.metadata.score or 0.0))
            for o in result.objects]
