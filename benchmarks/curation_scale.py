"""Curation's near-duplicate check at catalog sizes: documents per second of `curate_documents`
(MinHash LSH candidates, exact Jaccard on them) against comparing every new document with every
kept one (what curation did before), on the same synthetic catalog.

    .venv/bin/python benchmarks/curation_scale.py --sizes 500 5000 20000 --pairwise-up-to 5000

Each catalog: random 80-word documents over a 5,000-word vocabulary, a tenth of them edited copies
of another (1 to 4 words changed, so some are near duplicates and some are not). Prints one JSON
object; both ways run in this process, one after the other, so compare them within one run.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from bench_support import emit
from components.config import DataConfig, IndexConfig
from components.data.curate import curate_documents, jaccard, shingles


def catalog(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(5000)]
    originals = int(n * 0.9)
    texts = [" ".join(rng.choices(words, k=80)) for _ in range(originals)]
    for j in range(n - originals):
        edited = texts[rng.randrange(originals)].split()
        for _ in range(1 + j % 4):
            edited[rng.randrange(len(edited))] = rng.choice(words)
        texts.append(" ".join(edited))
    rng.shuffle(texts)
    return [{"id": f"doc-{i}", "text": text, "source": f"doc-{i}.md"} for i, text in enumerate(texts)]


def pairwise_kept(docs: list[dict], threshold: float) -> list[str]:
    """The exhaustive check: each document against every kept one."""
    kept: list[tuple[str, set]] = []
    for doc in docs:
        grams = shingles(doc["text"])
        if all(jaccard(grams, other) < threshold for _, other in kept):
            kept.append((doc["id"], grams))
    return [doc_id for doc_id, _ in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--pairwise-up-to", type=int, default=5000,
                        help="largest catalog the exhaustive check also runs on (it grows with the square)")
    args = parser.parse_args()
    config = DataConfig()
    rows = []
    for n in args.sizes:
        docs = catalog(n)
        tic = time.perf_counter()
        kept, dropped = curate_documents(docs, config, IndexConfig().metadata_fields)
        seconds = time.perf_counter() - tic
        row = {"documents": n, "kept": len(kept), "near_duplicates_dropped": len(dropped),
               "lsh_seconds": round(seconds, 2), "lsh_docs_per_s": round(n / seconds, 1)}
        if n <= args.pairwise_up_to:
            tic = time.perf_counter()
            reference = pairwise_kept(docs, config.near_duplicate_threshold)
            pairwise = time.perf_counter() - tic
            row.update(pairwise_seconds=round(pairwise, 2), pairwise_docs_per_s=round(n / pairwise, 1),
                       speedup=round(pairwise / seconds, 2),
                       same_documents_kept=[d["id"] for d in kept] == reference)
        rows.append(row)
        print(json.dumps(row), flush=True)
    emit("curation_scale", {"near_duplicate_threshold": config.near_duplicate_threshold, "runs": rows})


if __name__ == "__main__":
    main()
