"""Answer generation throughput of the generator (what evaluation and serving spend their time on):
seconds per answer for greedy batched generation at several batch sizes, on the same RAG prompts.

    .venv/bin/python benchmarks/generation_throughput.py --questions 48 --batch-sizes 8 16 24

Prints one JSON object; compare the batch sizes within one run (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_support import emit
from components.config import load_params
from components.models.generator import generate_answers, load_base_generator, load_tokenizer
from components.models.resolve import resolve_model
from components.prompting import build_messages
from components.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 24])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--examples", type=Path, default=Path("data/raw/generator.jsonl"))
    args = parser.parse_args()
    params = load_params(args.params)
    path = resolve_model(params.models.generator, Settings().models_dir)
    model, tokenizer = load_base_generator(path, params.project.device), load_tokenizer(path)
    rows = [json.loads(line) for line in args.examples.read_text().splitlines() if line.strip()][: args.questions]
    conversations = [build_messages(r["question"], [(c["doc_id"], c["text"]) for c in r["context"]],
                                    params.generator.system_prompt) for r in rows]
    generate_answers(model, tokenizer, conversations[:8], params.generator.max_new_tokens, batch_size=8)  # warm-up
    seconds = {}
    for size in args.batch_sizes:
        tic = time.perf_counter()
        generate_answers(model, tokenizer, conversations, params.generator.max_new_tokens, batch_size=size)
        seconds[size] = (time.perf_counter() - tic) / len(conversations)
    base = seconds[args.batch_sizes[0]]
    emit("generation_throughput", {"model": params.models.generator, "questions": len(conversations),
                      "max_new_tokens": params.generator.max_new_tokens,
                      "seconds_per_answer": {str(k): round(v, 3) for k, v in seconds.items()},
                      f"speedup_vs_batch_{args.batch_sizes[0]}": {str(k): round(base / v, 2) for k, v in seconds.items()}})


if __name__ == "__main__":
    main()
