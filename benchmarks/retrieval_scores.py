"""How sure retrieval is, by kind of question: the top hybrid score of the golden questions of the
retrieval intents, split into answerable ones whose gold document came back, answerable ones whose
did not, and unanswerable ones. What `feedback.weak_retrieval_score` (the review queue's "weak
retrieval") is chosen from.

    .venv/bin/python benchmarks/retrieval_scores.py [--params examples/python-faq/params.yaml]

Builds the params' index from its curated data in a temporary Weaviate server; prints one JSON
object: percentiles of each group and, for candidate thresholds, the share of each group under it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from bench_support import emit
from components.config import load_params
from components.index.build import build_index_version
from components.index.embedding import embed_texts, load_embedder
from components.index.search import search
from components.index.server import weaviate_server
from components.index.store import connect_weaviate, point_alias
from components.models.resolve import resolve_model
from components.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    curated = ROOT / params.data.curated_dir
    docs = _rows(curated / "documents.jsonl")
    golden = [g for g in _rows(curated / "golden.jsonl") if g.get("intent") in params.router.retrieval_intents]
    embedder = load_embedder(resolve_model(params.models.encoder, Settings().models_dir))
    tops: dict[str, list[float]] = {"answerable_found": [], "answerable_missed": [], "unanswerable": []}
    with tempfile.TemporaryDirectory() as tmp, weaviate_server(Settings(), Path(tmp) / "data") as server:
        with connect_weaviate(Settings(**server.connection())) as client:
            built = build_index_version(client, docs, embedder, params.index, params.models.encoder, show_progress=False)
            point_alias(client, params.index.alias, built.collection)
            vectors = embed_texts(embedder, [g["question"] for g in golden], 32)
            for row, vector in zip(golden, vectors, strict=True):
                hits = search(client, built.collection, row["question"], vector, params.index.top_k,
                              params.index.hybrid_alpha)
                top = max((h.score for h in hits), default=0.0)
                if not row.get("answerable", True):
                    tops["unanswerable"].append(top)
                elif set(row.get("gold_doc_ids", [])) & {h.doc_id for h in hits}:
                    tops["answerable_found"].append(top)
                else:
                    tops["answerable_missed"].append(top)
    thresholds = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    emit("retrieval_scores", {
        "params": str(args.params.relative_to(ROOT) if args.params.is_relative_to(ROOT) else args.params),
        "hybrid_alpha": params.index.hybrid_alpha, "top_k": params.index.top_k, "cpu_count": os.cpu_count(),
        "groups": {name: {"n": len(v), **({f"p{q}": round(float(np.percentile(v, q)), 3) for q in (5, 25, 50, 75, 95)}
                                          if v else {})} for name, v in tops.items()},
        "share_under": {str(t): {name: round(float(np.mean(np.array(v) < t)), 3) if v else None
                                 for name, v in tops.items()} for t in thresholds}})


if __name__ == "__main__":
    main()
