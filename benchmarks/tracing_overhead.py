"""What tracing adds to an answer: the request thread's time to build and hand over one answer's
MLflow trace (components/registry/traces.py), next to the answer's own time, measured side by side
in one run (answer, then its trace, n times) against a real SQLite tracking store.

    .venv/bin/python benchmarks/tracing_overhead.py --n 30

The answer is the params' generator (base model, no adapter: tracing does not care whose weights)
answering a golden question over three curated documents, greedy, up to generator.max_new_tokens;
route and retrieval add little to it. Prints one JSON object; every trace is read back from the
store to show none was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_support import emit
from components.assistant import Stage
from components.config import load_params
from components.models.generator import generate_answers, load_base_generator, load_tokenizer
from components.models.resolve import resolve_model
from components.prompting import build_messages
from components.registry.traces import dropped_traces, trace_answers
from components.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="answers (each traced)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    curated = ROOT / params.data.curated_dir
    documents = {d["id"]: d["text"] for d in _rows(curated / "documents.jsonl")}
    golden = [g for g in _rows(curated / "golden.jsonl") if g.get("answerable") and g.get("gold_doc_ids")]

    with tempfile.TemporaryDirectory(prefix="ragops-tracing-") as home:
        os.environ["RAGOPS_HOME"] = home
        settings = Settings()
        from components.registry.tracking import configure_mlflow

        configure_mlflow(settings, "tracing-overhead")
        base = resolve_model(params.models.generator, settings.models_dir)
        model, tokenizer = load_base_generator(base, "cpu"), load_tokenizer(base)
        answer_ms, trace_ms, ids = [], [], []
        for i in range(args.n + 1):  # the first is a warm-up, not measured
            row = golden[i % len(golden)]
            chunks = [(d, " ".join(documents[d].split()[:120])) for d in (row["gold_doc_ids"] * 3)[:3] if d in documents]
            start = time.time_ns()
            (text,) = generate_answers(model, tokenizer, [build_messages(row["question"], chunks,
                                                                         params.generator.system_prompt)],
                                       params.generator.max_new_tokens)
            end = time.time_ns()
            answer = {"question": row["question"], "answer": text, "citations": [], "route": "catalog",
                      "route_confidence": 0.9, "answerability": None,
                      "chunks": [{"doc_id": d, "text": t, "score": 0.5, "chunk_id": f"{d}-0"} for d, t in chunks]}
            stages = [Stage("route", (0,), start, start + 1), Stage("retrieve", (0,), start + 1, start + 2),
                      Stage("generate", (0,), start + 2, end)]
            tic = time.perf_counter()
            (trace_id,) = trace_answers([answer], stages, {"bundle_version": "benchmark"})
            traced = time.perf_counter() - tic
            if i:
                answer_ms.append((end - start) / 1e6)
                trace_ms.append(traced * 1000)
                ids.append(trace_id)
        import mlflow

        mlflow.flush_trace_async_logging()
        stored = sum(mlflow.get_trace(t, silent=True) is not None for t in ids)

    answers, traces = np.array(answer_ms), np.array(trace_ms)
    emit("tracing_overhead", {
        "cpu": _cpu(), "cores": os.cpu_count(), "n": args.n, "generator": params.models.generator,
        "answer_ms": {"p50": round(float(np.percentile(answers, 50)), 1), "p95": round(float(np.percentile(answers, 95)), 1)},
        "tracing_ms": {"p50": round(float(np.percentile(traces, 50)), 2), "p95": round(float(np.percentile(traces, 95)), 2)},
        "tracing_share_of_answer": {"p50": round(float(np.percentile(traces, 50) / np.percentile(answers, 50)), 5),
                                    "p95": round(float(np.percentile(traces, 95) / np.percentile(answers, 95)), 5)},
        "traces_stored": stored, "traces_dropped": dropped_traces()})


if __name__ == "__main__":
    main()
