"""A large catalog through the data half of the pipeline: curate, validate and index N documents.

The demo's raw data (its training and evaluation sets refer to its documents) plus generated
product documents up to N in all, written as Markdown files the way a user's catalog arrives:
each one a new name, category, price and stock, and eight sentences drawn from the demo
products' texts with its own numbers, so curation keeps them (no near duplicates). Then, as the
pipeline's steps run them (without Prefect, MLflow or DVC around them):
- curate: `curate()` reads the files, normalises, checks and de-duplicates (MinHash LSH);
- validate: Great Expectations on the curated files, Data Docs written;
- index: a full build with the real encoder into a standalone Weaviate server.
Prints one JSON object with seconds and documents per second per phase.

    .venv/bin/python benchmarks/catalog_scale.py --documents 5000
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from bench_support import emit
from components.config import Params
from components.data.curate import curate, read_jsonl
from components.data.validation import validate_curated
from components.index.build import build_index_version
from components.index.embedding import load_embedder
from components.index.server import weaviate_server
from components.index.store import connect_weaviate
from components.models.resolve import resolve_model
from components.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = re.compile(r"(?<=[.!?])\s+")



def write_catalog(raw: Path, total: int, seed: int = 0) -> int:
    """The demo's raw data in `raw`, its documents topped up with generated ones to `total`;
    returns how many were generated."""
    shutil.copytree(ROOT / "data" / "raw", raw)
    demo = [p for p in (raw / "documents").iterdir()]
    products = [yaml.safe_load(p.read_text().split("---\n")[1]) | {"body": p.read_text().split("---\n", 2)[2]}
                for p in demo if p.name.startswith("p-")]
    sentences = [s for p in products for s in SENTENCE.split(" ".join(p["body"].split("\n", 1)[-1].split())) if len(s) > 20]
    rng = random.Random(seed)
    generated = max(0, total - len(demo))
    for i in range(generated):
        base = rng.choice(products)
        name = f"{base['name'].split()[0]} Model {i:05d}"
        drawn = rng.sample(sentences, 8)
        body = " ".join(re.sub(r"\d+", lambda _: str(rng.randint(2, 999)), s) for s in drawn)
        front = {"id": f"g-{i:05d}", "name": name, "category": base["category"],
                 "price": round(rng.uniform(5, 2000), 2), "stock": rng.randint(0, 200), "updated_at": "2026-12-01"}
        (raw / "documents" / f"g-{i:05d}.md").write_text(f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n# {name}\n\n"
                                                        f"{body} Catalog number {i:05d}.\n")
    return generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=5000)
    args = parser.parse_args()
    params = Params()
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generated = write_catalog(work / "raw", args.documents)
        tic = time.perf_counter()
        counts = curate(work / "raw", work / "curated", params.data, params.index.metadata_fields)
        curate_s = time.perf_counter() - tic
        tic = time.perf_counter()
        report = validate_curated(work / "curated", params, work / "data-docs")
        validate_s = time.perf_counter() - tic
        if not report.success:
            raise SystemExit(f"validation failed:\n{report.describe()}")
        docs = read_jsonl(work / "curated" / "documents.jsonl")
        embedder = load_embedder(resolve_model(params.models.encoder, Settings().models_dir))
        with weaviate_server(Settings(), work / "weaviate") as server, \
                connect_weaviate(Settings(**server.connection())) as client:
            tic = time.perf_counter()
            built = build_index_version(client, docs, embedder, params.index, params.models.encoder, show_progress=True)
            index_s = time.perf_counter() - tic
    total = curate_s + validate_s + index_s
    result.update({
        "documents": args.documents, "generated": generated, "kept": counts["documents.jsonl"], "chunks": built.chunks,
        "curate": {"seconds": round(curate_s, 2), "documents_per_s": round(args.documents / curate_s, 1)},
        "validate": {"seconds": round(validate_s, 2), "documents_per_s": round(args.documents / validate_s, 1)},
        "index": {"seconds": round(index_s, 2), "documents_per_s": round(args.documents / index_s, 1),
                  "chunks_per_s": round(built.chunks / index_s, 1)},
        "total_seconds": round(total, 1)})
    emit("catalog_scale", result)


if __name__ == "__main__":
    main()
