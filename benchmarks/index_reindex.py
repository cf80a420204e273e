"""Index build and reindex cost on a generated corpus, and hybrid query latency.

On N generated product documents (variants of the demo catalog with their own names), against
a standalone Weaviate server from the provisioned binary:
- raw embedding throughput of the encoder at index.embed_batch_size (a sample of the chunks);
- a full build: seconds and chunks/s, as a share of the raw embedding throughput;
- incremental reindexes with 1, 10 and 100 changed documents, as a share of the full build time;
- hybrid search latency p50/p95 (query vector precomputed) and with the query embedding.
Prints one JSON object; ratios come from one run, so compare them, not absolute seconds.

    .venv/bin/python benchmarks/index_reindex.py --documents 10000
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from bench_support import emit
from components.config import DataConfig, IndexConfig, ModelsConfig
from components.data.curate import curate_documents, read_documents
from components.index.build import build_index_version
from components.index.chunking import chunk_document
from components.index.embedding import embed_texts, load_embedder
from components.index.search import search
from components.index.server import weaviate_server
from components.index.store import connect_weaviate, point_alias
from components.models.resolve import resolve_model
from components.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def generated_corpus(n: int) -> list[dict]:
    demo, _ = curate_documents(read_documents(ROOT / "data" / "raw" / "documents"), DataConfig(),
                               IndexConfig().metadata_fields)
    products = [d for d in demo if d["id"].startswith("p-")]
    docs = []
    for i in range(n):
        base = products[i % len(products)]
        name = f"{base['name']} Series {i}"
        text = base["text"].replace(base["name"], name) + f"\nCatalog number {i:06d}."
        docs.append({**base, "id": f"g-{i:06d}", "name": name, "text": text,
                     "content_hash": hashlib.sha256(text.encode()).hexdigest()})
    return docs


def edited(docs: list[dict], count: int, round_no: int) -> list[dict]:
    out = list(docs)
    step = max(1, len(docs) // count)
    for j in range(count):
        i = (j * step + round_no) % len(docs)
        text = out[i]["text"] + f" Revised in round {round_no}."
        out[i] = {**out[i], "text": text, "content_hash": hashlib.sha256(text.encode()).hexdigest()}
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--raw-sample", type=int, default=4000, help="chunks embedded for the raw throughput")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    config = IndexConfig(alias="Bench")
    encoder = ModelsConfig().encoder
    embedder = load_embedder(resolve_model(encoder, Settings().models_dir))
    docs = generated_corpus(args.documents)
    texts = [c.text for d in docs for c in chunk_document(d, config)]
    embed_texts(embedder, texts[:64], config.embed_batch_size)  # warm-up
    sample = texts[: args.raw_sample]
    tic = time.perf_counter()
    embed_texts(embedder, sample, config.embed_batch_size)
    raw_chunks_per_s = len(sample) / (time.perf_counter() - tic)

    result: dict = {"benchmark": "index_reindex", "documents": len(docs), "chunks": len(texts),
                    "embed_batch_size": config.embed_batch_size, "raw_embedding_chunks_per_s": round(raw_chunks_per_s, 1)}
    with tempfile.TemporaryDirectory() as tmp, weaviate_server(Settings(), Path(tmp) / "data") as server:
        settings = Settings(**server.connection())
        with connect_weaviate(settings) as client:
            tic = time.perf_counter()
            full = build_index_version(client, docs, embedder, config, encoder=encoder, show_progress=False)
            full_s = time.perf_counter() - tic
            point_alias(client, config.alias, full.collection)
            result["full_build"] = {"seconds": round(full_s, 2), "chunks_per_s": round(full.chunks / full_s, 1),
                                    "share_of_raw_embedding_throughput": round(full.chunks / full_s / raw_chunks_per_s, 3)}
            incremental = {}
            for round_no, count in enumerate((1, 10, 100), start=1):
                changed = edited(docs, count, round_no)
                tic = time.perf_counter()
                built = build_index_version(client, changed, embedder, config, encoder=encoder, show_progress=False)
                seconds = time.perf_counter() - tic
                point_alias(client, config.alias, built.collection)
                docs = changed
                incremental[str(count)] = {"seconds": round(seconds, 2), "share_of_full_build": round(seconds / full_s, 4),
                                           "embedded_chunks": built.embedded_chunks, "copied_chunks": built.copied_chunks}
            result["incremental"] = incremental

            questions = [f"How much does the {d['name']} cost?" for d in docs[:: max(1, len(docs) // args.queries)]]
            vectors = embed_texts(embedder, questions, 32)
            search(client, config.alias, questions[0], vectors[0], config.top_k, config.hybrid_alpha)  # warm-up
            search_ms, answer_ms = [], []
            for question, vector in zip(questions, vectors):
                tic = time.perf_counter()
                search(client, config.alias, question, vector, config.top_k, config.hybrid_alpha)
                search_ms.append((time.perf_counter() - tic) * 1000)
                tic = time.perf_counter()
                search(client, config.alias, question, embed_texts(embedder, [question], 1)[0], config.top_k,
                       config.hybrid_alpha)
                answer_ms.append((time.perf_counter() - tic) * 1000)
            result["hybrid_query_ms"] = {"queries": len(questions), "p50": round(statistics.median(search_ms), 2),
                                         "p95": round(percentile(search_ms, 0.95), 2)}
            result["embed_and_hybrid_query_ms"] = {"p50": round(statistics.median(answer_ms), 2),
                                                   "p95": round(percentile(answer_ms, 0.95), 2)}
    result["goals"] = {"full_build_share_of_raw >= 0.8": result["full_build"]["share_of_raw_embedding_throughput"] >= 0.8,
                       "one_document_share_of_full <= 0.05": incremental["1"]["share_of_full_build"] <= 0.05,
                       "hybrid_p95_ms <= 50": result["hybrid_query_ms"]["p95"] <= 50}
    emit("index_reindex", result)


if __name__ == "__main__":
    main()
