"""Weaviate: connection, versioned collections, the serving alias, hybrid search.

Each build writes a new collection `<alias>_v<n>`; serving reads the alias, which moves in
one step when a version goes live. Nothing here ever edits the live collection. A version is
sealed by its ledger (in the `<alias>Ledger` collection) once its checks passed; a version
without one is an unfinished build.

    >>> from components.settings import Settings
    >>> with connect_weaviate(Settings()) as client:  # doctest: +SKIP
    ...     live_collection(client, "Catalog")
    'Catalog_v3'
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse
from uuid import UUID, uuid5

import weaviate
from weaviate.classes.config import Configure, ConsistencyLevel, DataType, Property, ReplicationDeletionStrategy, Tokenization
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter

from components.index.chunking import Chunk
from components.index.ledger import Ledger
from components.index.server import ServerAddress, WeaviateServerError
from components.index.shared_server import shared_weaviate
from components.settings import Settings, redacted

# Every chunk's properties, whatever the domain; index.metadata_fields adds the domain's own.
CORE_PROPERTIES = (
    Property(name="doc_id", data_type=DataType.TEXT, skip_vectorization=True),
    Property(name="chunk_index", data_type=DataType.INT),
    Property(name="text", data_type=DataType.TEXT),
    Property(name="title", data_type=DataType.TEXT),
    Property(name="doc_hash", data_type=DataType.TEXT),
    Property(name="updated_at", data_type=DataType.TEXT),
)
# index.metadata_fields types (components.config.FIELD_TYPES): Weaviate's type, Python's cast.
FIELD_KINDS = {"text": (DataType.TEXT, str), "number": (DataType.NUMBER, float), "int": (DataType.INT, int),
               "bool": (DataType.BOOL, bool)}


def properties(fields: Mapping[str, str]) -> list[Property]:
    """A version's schema: the core properties and one per metadata field (text ones tokenized
    as one value, so a filter on "home" does not match "home-office")."""
    return [*CORE_PROPERTIES, *(Property(name=name, data_type=FIELD_KINDS[kind][0], skip_vectorization=True,
                                         **({"tokenization": Tokenization.FIELD} if kind == "text" else {}))
                                for name, kind in fields.items())]


LEDGER_NAMESPACE = UUID("0b5f8a4e-7d0c-4a55-8f1e-2f7c9d3e6a11")


class WeaviateIndexError(RuntimeError):
    """The index cannot be built, checked or served; the message says what to do."""


@contextlib.contextmanager
def connect_weaviate(settings: Settings) -> Iterator[weaviate.WeaviateClient]:
    """A client for RAGOPS_WEAVIATE_URL, or for the local server of RAGOPS_HOME, run from the
    binary infra/weaviate/provision.py built (started if needed, stopped by its last user)."""
    timeout = AdditionalConfig(timeout=Timeout(init=60, query=60, insert=180))
    with contextlib.ExitStack() as stack:
        if settings.weaviate_url:
            url = urlparse(settings.weaviate_url)
            grpc = urlparse(settings.weaviate_grpc_url or f"{url.scheme}://{url.hostname}:50051")
            for variable, given in (("RAGOPS_WEAVIATE_URL", url), ("RAGOPS_WEAVIATE_GRPC_URL", grpc)):
                if given.username or given.password:  # Weaviate takes no credentials in the URL; they would be dropped
                    raise WeaviateIndexError(f"{variable} carries credentials ({redacted(given.geturl())}); Weaviate "
                                             f"authenticates with an API key: set RAGOPS_WEAVIATE_API_KEY and remove them "
                                             f"from the URL")
            auth = Auth.api_key(settings.weaviate_api_key.get_secret_value()) if settings.weaviate_api_key else None
            client = weaviate.connect_to_custom(
                http_host=url.hostname, http_port=url.port or (443 if url.scheme == "https" else 80),
                http_secure=url.scheme == "https", grpc_host=grpc.hostname, grpc_port=grpc.port or 50051,
                grpc_secure=grpc.scheme == "https", auth_credentials=auth, additional_config=timeout,
            )
        else:
            server = _enter_local_server(stack, settings)
            client = weaviate.connect_to_local(host="127.0.0.1", port=server.http_port, grpc_port=server.grpc_port,
                                               auth_credentials=Auth.api_key(server.api_key), additional_config=timeout)
        stack.callback(client.close)
        yield client


def _enter_local_server(stack: contextlib.ExitStack, settings: Settings) -> ServerAddress:
    """No external server: the local one of RAGOPS_HOME on loopback (shared with the other ragops
    processes of this home), its log beside its data (quoted if it does not come up)."""
    try:
        return stack.enter_context(shared_weaviate(settings, settings.weaviate_data_path.parent / "weaviate.log"))
    except WeaviateServerError as exc:
        raise WeaviateIndexError(f"{exc}; or set RAGOPS_WEAVIATE_URL to an external server") from exc


@contextlib.contextmanager
def local_server_held(settings: Settings) -> Iterator[None]:
    """Keep the local Weaviate server of RAGOPS_HOME up for a stretch of work (nothing to hold with
    an external server). Each `connect_weaviate` starts the local server if no one holds it and
    stops it when its last user leaves, so the steps of one run (index build, evaluation,
    registration, promotion) would start it one after the other, each start 2 to 3 s."""
    with contextlib.ExitStack() as stack:
        if not settings.weaviate_url:
            _enter_local_server(stack, settings)
        yield


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


def chunk_properties(chunk: Chunk, doc: dict, fields: Mapping[str, str]) -> dict:
    """Object properties of a chunk: its text (BM25), what identifies it, and the document's
    metadata fields (None where the document has no such field; curation checked the types)."""
    return {"doc_id": chunk.doc_id, "chunk_index": chunk.index, "text": chunk.text,
            "title": str(doc.get("name", "")), "doc_hash": doc["content_hash"],
            "updated_at": str(doc.get("updated_at", "")),
            **{name: FIELD_KINDS[kind][1](doc[name]) if doc.get(name) is not None else None
               for name, kind in fields.items()}}


@dataclass(frozen=True)
class StoredObject:
    uuid: str
    properties: dict
    vector: list[float]


def _uncompressed(vector_index: str):
    """Full-precision vectors, said explicitly: without it Weaviate tries a server-wide default
    quantization and logs an error for every new collection when none is set."""
    quantizer = Configure.VectorIndex.Quantizer.none()
    if vector_index == "flat":
        return Configure.VectorIndex.flat(quantizer=quantizer)
    return Configure.VectorIndex.hnsw(quantizer=quantizer)


def replication(factor: int):
    """Replicas on `factor` nodes of a cluster (None for one server). Async replication brings a
    node that was down up to date with the others (Weaviate 1.35 leaves it off unless asked); a
    conflict between replicas is resolved by the newest write."""
    if factor <= 1:
        return None
    return Configure.replication(factor=factor, async_enabled=True,
                                 deletion_strategy=ReplicationDeletionStrategy.TIME_BASED_RESOLUTION)


def _created(client: weaviate.WeaviateClient, name: str, factor: int, **config) -> None:
    """`client.collections.create` with the replication of index.replication_factor."""
    client.collections.create(name, replication_config=replication(factor), **config)


def create_collection(client: weaviate.WeaviateClient, name: str, vector_index: str = "flat",
                      fields: Mapping[str, str] | None = None, replication_factor: int = 1) -> None:
    """An empty version with the core properties and those of `fields` (index.metadata_fields),
    on `replication_factor` nodes. Null state is indexed so that a filter can leave out documents
    without a field."""
    index = _uncompressed(vector_index)
    _created(client, name, replication_factor, properties=properties(fields or {}),
             inverted_index_config=Configure.inverted_index(index_null_state=True),
             vector_config=Configure.Vectors.self_provided(vector_index_config=index))


def consistent(client: weaviate.WeaviateClient, name: str, level: str):
    """The collection (or alias) `name`, read at consistency `level` (index.consistency_level)."""
    return client.collections.get(name).with_consistency_level(ConsistencyLevel[level])


def write_objects(client: weaviate.WeaviateClient, name: str, objects: Iterable[StoredObject],
                  replication_factor: int = 1) -> int:
    """Insert objects into a version that is not live; returns how many were sent. A version with
    replicas (`replication_factor` > 1, index.replication_factor) is written at consistency ALL:
    each object is on every replica before the version is checked and goes live (at QUORUM, a
    count right after the build found 551 of 652 objects)."""
    collection = client.collections.get(name)
    if replication_factor > 1:
        collection = collection.with_consistency_level(ConsistencyLevel.ALL)
    sent = 0
    with collection.batch.fixed_size(batch_size=1000, concurrent_requests=2) as batch:
        for obj in objects:
            batch.add_object(uuid=obj.uuid, properties=obj.properties, vector=obj.vector)
            sent += 1
    failed = collection.batch.failed_objects
    if failed:
        raise WeaviateIndexError(f"{len(failed)} objects failed to insert into {name} (first: {failed[0].message}); "
                                 f"the new version is not live and the next build discards it: check that Weaviate "
                                 f"(every node of a cluster) answers, then rerun")
    return sent


def read_objects(client: weaviate.WeaviateClient, name: str, doc_ids: set[str]) -> Iterator[StoredObject]:
    """Objects (with vectors) of the given documents in a version: what an incremental build copies."""
    for obj in client.collections.get(name).iterator(include_vector=True, cache_size=5000):
        if obj.properties["doc_id"] in doc_ids:
            vector = obj.vector["default"] if isinstance(obj.vector, dict) else obj.vector
            yield StoredObject(str(obj.uuid), dict(obj.properties), list(vector))


def read_chunks(client: weaviate.WeaviateClient, name: str, doc_ids: set[str] | None) -> Iterator[dict]:
    """doc_id, chunk_index, text and title of the chunks of `doc_ids` (None: all) in a version, no
    vectors. Filtered here, not by Weaviate: doc_id is word-tokenized, so an equality filter on
    "p-1" would also match "1-p"."""
    objects = client.collections.get(name).iterator(return_properties=["doc_id", "chunk_index", "text", "title"],
                                                    cache_size=5000)
    for obj in objects:
        if doc_ids is None or obj.properties["doc_id"] in doc_ids:
            yield dict(obj.properties)


def chunk_counts(client: weaviate.WeaviateClient, name: str) -> dict[str, int]:
    """Objects per document id, from the stored objects themselves (their doc_id only). On 20,000
    chunks of 10,000 documents this takes 0.4 s; a group-by aggregation over doc_id took 2.2 s,
    a third of a one-document reindex."""
    objects = client.collections.get(name).iterator(return_properties=["doc_id"], cache_size=10_000)
    return dict(Counter(str(obj.properties["doc_id"]) for obj in objects))


def ledger_collection(alias: str) -> str:
    return f"{alias}Ledger"


def write_index_ledger(client: weaviate.WeaviateClient, alias: str, ledger: Ledger, replication_factor: int = 1) -> None:
    """Seal a version: a version without a ledger is an unfinished build."""
    name = ledger_collection(alias)
    if not client.collections.exists(name):
        _created(client, name, replication_factor, vector_config=Configure.Vectors.self_provided(
            vector_index_config=_uncompressed("flat")), properties=[
            Property(name="collection", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            Property(name="ledger", data_type=DataType.TEXT, index_filterable=False, index_searchable=False)])
    client.collections.get(name).data.insert({"collection": ledger.collection, "ledger": ledger.to_json()},
                                             uuid=uuid5(LEDGER_NAMESPACE, ledger.collection))


def read_index_ledger(client: weaviate.WeaviateClient, alias: str, collection: str) -> Ledger | None:
    name = ledger_collection(alias)
    if not client.collections.exists(name):
        return None
    found = client.collections.get(name).query.fetch_object_by_id(uuid5(LEDGER_NAMESPACE, collection))
    return Ledger.from_json(found.properties["ledger"]) if found else None


def delete_version(client: weaviate.WeaviateClient, alias: str, collection: str) -> None:
    client.collections.delete(collection)
    name = ledger_collection(alias)
    if client.collections.exists(name):
        client.collections.get(name).data.delete_many(Filter.by_property("collection").equal(collection))


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
    """Delete all but the newest `keep` versions, never the live one or any in `protect` (the
    rollback target: held challengers, newer than it, must not push it out)."""
    live = live_collection(client, alias)
    versions = list_versions(client, alias)
    doomed = [v for v in versions[:-keep] if v != live and v not in protect]
    for name in doomed:
        delete_version(client, alias, name)
    return doomed


def discard_unsealed(client: weaviate.WeaviateClient, alias: str) -> list[str]:
    """Delete versions a killed or failed build left without a ledger (never the live one).
    Builds of one alias run one at a time (the reindex deployment's concurrency limit)."""
    live = live_collection(client, alias)
    doomed = [v for v in list_versions(client, alias) if v != live and read_index_ledger(client, alias, v) is None]
    for name in doomed:
        delete_version(client, alias, name)
    return doomed
