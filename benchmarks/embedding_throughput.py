"""Embedding throughput of the index encoder: chunks per second at several batch sizes.

    .venv/bin/python benchmarks/embedding_throughput.py --chunks 512

Prints one JSON object. Ratios between batch sizes come from the same run; absolute numbers
depend on the machine and its load, so compare them only within one output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench_support import emit
from components.config import DataConfig, IndexConfig, ModelsConfig
from components.data.curate import curate_documents, read_documents
from components.index.chunking import chunk_document
from components.index.embedding import embed_texts, load_embedder
from components.models.resolve import resolve_model
from components.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=512)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--documents", type=Path, default=Path("data/raw/documents"))
    args = parser.parse_args()

    docs, _ = curate_documents(read_documents(args.documents), DataConfig(), IndexConfig().metadata_fields)
    texts = [c.text for d in docs for c in chunk_document(d, IndexConfig())]
    texts = (texts * (args.chunks // len(texts) + 1))[: args.chunks]
    embedder = load_embedder(resolve_model(ModelsConfig().encoder, Settings().models_dir))
    embed_texts(embedder, texts[:16], batch_size=16)  # warm-up
    results = {}
    for batch_size in args.batch_sizes:
        tic = time.perf_counter()
        embed_texts(embedder, texts, batch_size=batch_size)
        results[str(batch_size)] = round(len(texts) / (time.perf_counter() - tic), 1)
    best = max(results.values())
    emit("embedding_throughput", {
        "benchmark": "embedding_throughput", "chunks": len(texts), "torch_threads": torch.get_num_threads(),
        "chunks_per_s_by_batch_size": results,
        "ratio_to_batch_1": {k: round(v / results[str(args.batch_sizes[0])], 2) for k, v in results.items()},
        "best_chunks_per_s": best,
    })


if __name__ == "__main__":
    main()
