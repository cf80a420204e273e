"""The champion's answers through each inference engine, side by side in one run: single-answer latency
(what a customer waits for) and the golden-set answers (the same answers? the same key facts and refusals?).

    make run   # first: the benchmark loads the champion of an existing RAGOPS_HOME (.ragops)
    .venv/bin/python benchmarks/answer_engines.py --latency-questions 16 > engines.json

For each engine (`serve.inference_engine`: transformers, ctranslate2, openvino, and variants not
served: CTranslate2 without the shared system turn or with int8 weights, OpenVINO in bf16 where the
CPU has it), the same loaded bundle
answers every golden question through route → retrieve → check → generate (batched, as the
evaluation asks them) and then `--latency-questions` of them one at a time, as `ragops serve` and
the evaluation's latency metric do. Prints one JSON object: latency p50/p95 per engine, key-fact
accuracy, refusal accuracy and false refusals per engine, and how many answers differ from
transformers'. The engines alternate question by question in the latency part, so the machine's
noise falls on both alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from bench_support import emit, require_champion
from components.config import load_params
from components.assistant import ENGINES as SERVED_ENGINES
from components.evaluation.metrics import answer_metrics
from components.serving.champion import bundle_weaviate, load_bundle
from components.settings import Settings

ENGINES = ("transformers", *SERVED_ENGINES)  # transformers first: the reference the others are compared with
# An engine as served but for one thing: CTranslate2 with the system turn's state computed for every
# prompt (as before it was shared) or with int8 weights (its CPU compute types are float32 and int8
# only); OpenVINO computing in bf16 (on a CPU without it, OpenVINO computes in float32 anyway).
VARIANTS = {"ctranslate2, system turn not shared": ("ctranslate2", {"compute_type": "float32", "share_system_turn": False}),
            "ctranslate2, int8": ("ctranslate2", {"compute_type": "int8"}),
            "openvino, bf16": ("openvino", {"precision": "bf16"})}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-questions", type=int, default=16)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--golden", type=Path, default=Path("data/curated/golden.jsonl"))
    args = parser.parse_args()
    params, settings = load_params(args.params), Settings()
    name = params.promotion.bundle_name
    champion = require_champion(name, settings)
    golden = _read(args.golden)
    questions = [row["question"] for row in golden]
    with bundle_weaviate(settings), tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(name, str(champion.version))
        served = bundle.assistant
        # The other engines convert (or load) the champion's generator from its adapter: the bundle's
        # download of it is removed once the bundle is loaded
        adapter = mlflow.artifacts.download_artifacts(f"models:/{name}/{champion.version}/artifacts/generator-adapter",
                                                      dst_path=tmp)
        assistants = {e: dataclasses.replace(served, manifest=dataclasses.replace(served.manifest, inference_engine=e),
                                             engines={}, generator_adapter=adapter) for e in ENGINES}
        for name, (engine, options) in VARIANTS.items():
            converted = assistants[engine]._engine(True).model_dir  # the champion's generator, adapter merged
            assistants[name] = dataclasses.replace(assistants[engine], engines={
                True: SERVED_ENGINES[engine].generator(converted, served.generator_tokenizer, **options)})
        retrieved = served.retrieve(questions)
        results = {}
        for engine, assistant in assistants.items():
            assistant.answer(questions[:1])  # warm-up (and, for an engine, its conversion when not cached)
            tic = time.perf_counter()
            answers = assistant.answer(questions, retrieved_all=retrieved, progress=f"golden set, {engine}")
            seconds = time.perf_counter() - tic
            scored = answer_metrics(golden, [a.answer for a in answers], [[c["text"] for c in a.chunks] for a in answers],
                                    assistant.refusal_sentences, retrieval_intents=assistant.manifest.retrieval_intents)
            results[engine] = {"answers": [a.answer for a in answers], "golden_seconds": round(seconds, 1),
                               **{m: round(scored[m].value, 3) for m in ("key_fact_accuracy", "refusal_accuracy",
                                                                         "false_refusal_rate", "citation_precision")},
                               "latency_ms": []}
        for question in questions[: args.latency_questions]:
            for engine, assistant in assistants.items():
                tic = time.perf_counter()
                assistant.answer([question])
                results[engine]["latency_ms"].append((time.perf_counter() - tic) * 1000)
        bundle.unload()
    base = results["transformers"]["answers"]
    report = {"bundle_version": str(champion.version), "golden_questions": len(questions),
              "latency_questions": args.latency_questions}
    for engine, r in results.items():
        millis = r.pop("latency_ms")
        answers = r.pop("answers")
        report[engine] = {**r, "answer_p50_ms": round(float(np.percentile(millis, 50)), 1),
                          "answer_p95_ms": round(float(np.percentile(millis, 95)), 1),
                          "answers_differing_from_transformers": sum(a != b for a, b in zip(answers, base))}
        if engine != "transformers":
            report[engine]["examples_differing"] = [{"question": q, "transformers": b, engine: a} for q, a, b in
                                                    zip(questions, answers, base) if a != b][:5]
    report["speed_up_p50"] = {name: round(report["transformers"]["answer_p50_ms"] / report[name]["answer_p50_ms"], 2)
                              for name in results if name != "transformers"}
    emit("answer_engines", report)


if __name__ == "__main__":
    main()
