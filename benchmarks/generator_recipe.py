"""Robustness of the generator recipe: params.yaml's generator section trained with several seeds
and both training precisions, each bundle evaluated as the pipeline evaluates it, every gated
metric's min / mean / max over the runs and its gate.

    .venv/bin/python benchmarks/generator_recipe.py --seeds 1 2 3 --precisions bf16 fp32

One index and one router serve every run (they do not depend on the generator recipe); per run
the generator (LoRA, replay, answerability check) is trained from scratch with the seed and the
precision, and `evaluate_bundle` computes the metrics the promotion gates read. Prints one JSON
object (each run's metrics, training seconds and peak RSS, then the summary); lines of progress
go to stderr. Runs take about 20 min each on 2 CPU cores; `--out` keeps the JSON after each run,
and `--table that.json` prints it as the README's markdown table.
Checked end to end with a tiny generator (a params file with `models.generator: tiny:llama`):
one run in 89 s.

`--check-only` trains only the answerability check (about 4-5 min a seed) and prints the refusal
decision of the check alone on the golden catalog and policy questions, with the chunks the
index retrieves for them (every such question, whatever the router would say: the served
metrics route first). The quick loop for the refusal recipe; the gates read the whole bundle.
bf16 runs on CPUs without native bf16 are emulated and slow; they still measure the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_support import cpu_model, emit

ROOT = Path(__file__).resolve().parents[1]


def one_run(args: argparse.Namespace, seed: int, precision: str) -> dict:
    """Train and evaluate in a child process (a fresh heap: peak RSS per run, nothing shared)."""
    cmd = [sys.executable, __file__, "--child", "--seed", str(seed), "--precision", precision,
           "--params", str(args.params), "--work", str(args.work), "--ablation-questions", str(args.ablation_questions)]
    cmd += ["--check-only"] if args.check_only else []
    tic = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {**row, "wall_seconds": round(time.perf_counter() - tic, 1)}


def child(args: argparse.Namespace) -> None:
    import os

    os.environ["RAGOPS_HOME"] = str(args.work / "home")
    from components.assistant import Manifest, load_assistant
    from components.config import load_params
    from components.data.curate import curate
    from components.data.curate import read_jsonl as read_rows
    from components.evaluation.bundle import evaluate_bundle, evaluated_golden
    from components.index.build import build_index_version
    from components.index.embedding import load_embedder
    from components.index.store import connect_weaviate, local_server_held
    from components.models.resolve import resolve_model
    from components.settings import Settings
    from components.training.answerability import save_check, train_answerability
    from components.training.generator import save_generator, train_generator
    from components.training.generator_examples import split_holdout
    from components.training.planted_instructions import plant_instructions
    from components.training.router import save_router, train_router

    params = load_params(args.params)
    settings = Settings()
    generator_config = dataclasses.replace(params.generator, precision=args.precision)
    curated = args.work / "curated"
    if not (curated / "golden.jsonl").exists():
        curate(ROOT / params.data.raw_dir, curated, params.data, params.index.metadata_fields)
    rows = {name: read_rows(curated / name) for name in ("documents.jsonl", "router.jsonl", "generator.jsonl",
                                                          "golden.jsonl", "general_prompts.jsonl", "redteam.jsonl")}
    encoder = resolve_model(params.models.encoder, settings.models_dir)
    router_path = args.work / "router"
    if not router_path.exists():  # shared by every run: routing is not what the recipe changes
        save_router(train_router(rows["router.jsonl"], encoder, params.router, params.project.seed), router_path)
    if args.check_only:
        check_child(args, params, rows, encoder, settings)
        return
    run_path = args.work / f"generator-{args.seed}-{args.precision}"
    tic = time.perf_counter()
    base = resolve_model(params.models.generator, settings.models_dir)
    # As the train-generator step gives them: planted (with this run's seed) for the generator, as
    # curated for the answerability check.
    planted, _ = plant_instructions(rows["generator.jsonl"], params.generator.planted_instructions, args.seed)
    result = train_generator(planted, base, generator_config, args.seed)
    save_generator(result, run_path)
    check_seconds, check_reused = 0.0, False
    if generator_config.refusal_check:
        cached = check_cache(args, params, rows)
        if not (cached / "answerability").is_dir():
            check_tic = time.perf_counter()
            train, holdout = split_holdout(rows["generator.jsonl"], generator_config.holdout_examples, args.seed)
            save_check(train_answerability(train, holdout, encoder, generator_config, args.seed).check, cached)
            check_seconds = time.perf_counter() - check_tic
        else:
            check_reused = True
        shutil.copytree(cached / "answerability", run_path / "answerability", dirs_exist_ok=True)
    train_seconds = time.perf_counter() - tic
    with local_server_held(settings), connect_weaviate(settings) as client:
        index = build_index_version(client, rows["documents.jsonl"], load_embedder(encoder), params.index,
                                    params.models.encoder, show_progress=False)
        p = params
        manifest = Manifest.from_params(p, index.collection)
        assistant = load_assistant(manifest, str(router_path), str(run_path), settings, client,
                                   p.project.device, convert=(True, False))  # as the evaluate step loads it
        golden = evaluated_golden(rows["golden.jsonl"], p.evaluation.max_questions)  # as the evaluate step takes it
        # Every gated metric as the evaluate step computes it; the ablation table (not gated) on
        # `--ablation-questions` questions only (params.yaml's 48 cost ~3 min a run here).
        config = dataclasses.replace(p.evaluation, ablation_questions=args.ablation_questions)
        evaluation = evaluate_bundle(assistant, golden, rows["general_prompts.jsonl"], index, config, p.project.seed,
                                     rows["redteam.jsonl"], p.index)
    metrics = {name: m.value for name, m in evaluation.metrics.items()}
    print(json.dumps({"seed": args.seed, "precision": result.precision, "train_seconds": round(train_seconds, 1),
                      "check_seconds": round(check_seconds, 1), "check_reused": check_reused, "steps": len(result.history),
                      "best_step": result.best_step, "peak_rss_gb": round(
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), "metrics": metrics}))


def check_child(args: argparse.Namespace, params, rows: dict, encoder: str, settings) -> None:
    """The answerability check alone: trained with the seed, scored on the golden catalog/policy
    questions against the chunks the index retrieves (retrieved once, shared by every seed)."""
    from components.evaluation.metrics import answer_metrics
    from components.index.build import build_index_version
    from components.index.embedding import embed_texts, load_embedder
    from components.index.search import search
    from components.index.store import connect_weaviate, local_server_held
    from components.training.answerability import save_check, train_answerability
    from components.training.generator_examples import split_holdout

    golden = [r for r in rows["golden.jsonl"] if r.get("intent") in params.router.retrieval_intents]
    contexts_path = args.work / "golden-contexts.json"
    if not contexts_path.exists():
        with local_server_held(settings), connect_weaviate(settings) as client:
            embedder = load_embedder(encoder)
            index = build_index_version(client, rows["documents.jsonl"], embedder, params.index,
                                        params.models.encoder, show_progress=False)
            vectors = embed_texts(embedder, [r["question"] for r in golden], batch_size=32)
            contexts = [[hit.text for hit in search(client, index.collection, r["question"], v, params.index.top_k,
                                                     params.index.hybrid_alpha)] for r, v in zip(golden, vectors)]
        contexts_path.write_text(json.dumps(contexts))
    contexts = json.loads(contexts_path.read_text())
    config = params.generator
    tic = time.perf_counter()
    train, holdout = split_holdout(rows["generator.jsonl"], config.holdout_examples, args.seed)
    result = train_answerability(train, holdout, encoder, config, args.seed)
    decided = result.check.answerable([r["question"] for r in golden], contexts)
    texts = ["" if ok else result.check.refusal_reply for ok, _ in decided]
    scored = answer_metrics(golden, texts, refusals=(result.check.refusal_reply,),
                            retrieval_intents=params.router.retrieval_intents)
    save_check(result.check, check_cache(args, params, rows))
    wrong = [{"question": r["question"], "answerable": r.get("answerable", True), "score": round(score, 3)}
             for r, (ok, score) in zip(golden, decided) if ok != r.get("answerable", True)]
    print(json.dumps({"seed": args.seed, "precision": "fp32", "check_seconds": round(time.perf_counter() - tic, 1),
                      "pairs": result.pairs, "peak_rss_gb": round(
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                      "metrics": {f"{name}_check_only": scored[name].value
                                  for name in ("refusal_accuracy", "false_refusal_rate")}
                      | {f"heldout_{k}": v for k, v in result.metrics.items()},
                      "samples": {name: scored[name].samples for name in ("refusal_accuracy", "false_refusal_rate")},
                      "wrong": wrong,
                      # every question's score and label: the refusal/false-refusal trade-off per threshold
                      "scores": [[round(score, 4), int(r.get("answerable", True))] for r, (_, score) in zip(golden, decided)]}))


def check_cache(args: argparse.Namespace, params, rows: dict) -> Path:
    """Where the check of this seed is kept: it depends on generator.jsonl, the encoder, the
    refusal_* params and the seed only, so generator variants (and --check-only runs before them)
    share it instead of training it again (3.5-6 min a seed on a 2-core AMD EPYC)."""
    import hashlib

    g = params.generator
    settings = {k: getattr(g, k) for k in sorted(vars(g)) if k.startswith("refusal_") or k == "holdout_examples"}
    key = hashlib.sha256(json.dumps([rows["generator.jsonl"], settings, params.models.encoder, args.seed],
                                    sort_keys=True).encode()).hexdigest()[:16]
    return args.work / "checks" / key


def summary(runs: list[dict], gates: dict[str, float]) -> dict:
    from components.config import LOWER_IS_BETTER

    table = {}
    for name, threshold in gates.items():
        values = [r["metrics"].get(name, math.nan) for r in runs]
        lower = name in LOWER_IS_BETTER
        worst = max(values) if lower else min(values)
        table[name] = {"min": min(values), "mean": statistics.fmean(values), "max": max(values),
                       "gate": f"{'<=' if lower else '>='} {threshold:g}", "worst": worst,
                       "margin": (threshold - worst) if lower else (worst - threshold),
                       "passes_at_worst": (worst <= threshold) if lower else (worst >= threshold)}
    # The refusal decision each way (not gated; the gates read it as served: check, then generator).
    for name in ("refusal_accuracy_check_only", "refusal_accuracy_generator_only",
                 "false_refusal_rate_check_only", "false_refusal_rate_generator_only"):
        values = [r["metrics"][name] for r in runs if name in r["metrics"]]
        if values:
            table[name] = {"min": min(values), "mean": statistics.fmean(values), "max": max(values), "gate": "-"}
    return table


def markdown(report: dict) -> str:
    """The summary as docs/benchmarks.md renders it (benchmarks/figures.py): one row per gate."""
    from figures import summary_table

    return f"{report['cpu']}, {report['cores']} cores: " + "\n".join(summary_table(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here after every run")
    parser.add_argument("--ablation-questions", type=int, default=6,
                        help="questions in the (ungated) ablation table of each run")
    parser.add_argument("--check-only", action="store_true",
                        help="train only the answerability check per seed (fp32) and score it alone on the golden set")
    parser.add_argument("--table", type=Path, default=None,
                        help="print the markdown table of a JSON written by --out, and stop")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from components.config import load_params

    if args.table:  # summarised again, against the gates of --params
        report = json.loads(args.table.read_text())
        report["summary"] = summary(report["runs"], load_params(args.params).evaluation.gates)
        print(markdown(report))
        return

    gates = load_params(args.params).evaluation.gates
    with tempfile.TemporaryDirectory() as tmp:
        args.work = args.work or Path(tmp)
        runs: list[dict] = []
        for seed in args.seeds:
            for precision in (["fp32"] if args.check_only else args.precisions):
                print(f"generator recipe: seed {seed}, {precision} ...", file=sys.stderr, flush=True)
                runs.append(one_run(args, seed, precision))
                report = {"cpu": cpu_model(), "cores": len(__import__("os").sched_getaffinity(0)), "runs": runs,
                          "summary": summary(runs, {} if args.check_only else gates)}
                if args.out:
                    args.out.write_text(json.dumps(report, indent=2))
        emit("generator_recipe_check_only" if args.check_only else "generator_recipe", report)


if __name__ == "__main__":
    main()
