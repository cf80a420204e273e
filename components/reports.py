"""Model version descriptions: what a reviewer reads in the MLflow registry.

Each says what the model was trained on (data version), for how long, and how it did on
held-out data, in plain sentences; the run id links to the full record.

    >>> generator_description(result, params, "3f2a...", seconds=290.0, run_id="abc", behaviour={})  # doctest: +SKIP
"""

from __future__ import annotations

from components.config import Params
from components.evaluation import Metric
from components.training.generator import GeneratorResult
from components.training.router import RouterResult


def router_description(result: RouterResult, params: Params, data_md5: str, seconds: float, run_id: str) -> str:
    p, m = params, result.metrics
    how = f"LoRA r={p.router.lora_r}" if p.router.method == "lora" else "full fine-tuning"
    per_intent = ", ".join(f"{i} P={m[f'router_precision_{i}']:.2f}/R={m[f'router_recall_{i}']:.2f}"
                           for i in result.intents)
    return (f"Router: {p.models.encoder} + {how}. Trained on router.jsonl (md5 {data_md5}): {len(result.history)} "
            f"steps, {p.router.epochs} epochs x batch {p.router.batch_size}, {seconds:.0f} s on {p.project.device}. "
            f"Held-out ({result.test_size} queries): accuracy {m['router_accuracy']:.3f}, macro-F1 "
            f"{m['router_macro_f1']:.3f}; {per_intent}; {m['router_fallback_share']:.1%} below the confidence "
            f"threshold {p.router.confidence_threshold} (sent to {p.router.fallback_intent}). Run {run_id}.")


def generator_description(result: GeneratorResult, params: Params, data_md5: str, seconds: float, run_id: str,
                          behaviour: dict[str, Metric]) -> str:
    p = params
    steps = len(result.history)
    seen = steps * p.generator.batch_size * p.generator.grad_accum
    stop = (f"stopped early at step {steps} of {p.generator.max_steps} (held-out loss stopped improving)"
            if result.stopped_early else f"{steps} steps")
    resumed = f", resumed from checkpoint step {result.resumed_from_step}" if result.resumed_from_step else ""
    compare = "; ".join(
        f"{name.replace('_', ' ')} {behaviour[f'heldout_{name}_tuned'].value:.2f} "
        f"(base model {behaviour[f'heldout_{name}_base'].value:.2f}, n={behaviour[f'heldout_{name}_tuned'].samples})"
        for name in ("citation_accuracy", "refusal_rate", "false_refusal_rate")) if behaviour else "not measured"
    return (f"Generator: LoRA r={p.generator.lora_r} on {p.models.generator} (base referenced, not copied). "
            f"Trained on generator.jsonl (md5 {data_md5}; {result.train_examples} training examples, "
            f"{len(result.holdout)} held out): {stop}{resumed}, {seen} examples seen "
            f"({seen / max(1, result.train_examples):.2f} epochs), {seconds:.0f} s on {p.project.device}; weights "
            f"from step {result.best_step}, held-out loss {result.best_eval_loss:.3f}. Held-out behaviour with the same context "
            f"for both: {compare}. Run {run_id}.")
