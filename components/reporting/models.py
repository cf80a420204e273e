"""Model version descriptions: what a reviewer reads in the MLflow registry.

Each says what the model was trained on (data version), for how long, and how it did on
held-out data, in plain sentences; the run id links to the full record.

    >>> generator_description(result, params, "3f2a...", seconds=290.0, run_id="abc", behaviour=None,
    ...                       planted=71)  # doctest: +SKIP
"""

from __future__ import annotations

from components.config import Params
from components.evaluation.metrics import BehaviourComparison
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


def behaviour_sentence(behaviour: BehaviourComparison | None) -> str:
    """'citation accuracy 0.71 (base model 0.02; +0.69, 95% CI +0.56..+0.81, n=24); ...'"""
    if behaviour is None:
        return "not measured (generator.holdout_examples is 0)"
    parts = []
    for name, delta in behaviour.delta.items():
        if not delta.samples:  # e.g. refusal rate when the answerability check decides refusals
            parts.append(f"{name.replace('_', ' ')} not measured (no held-out example for it)")
            continue
        interval = f"{delta.value:+.2f}, 95% CI {delta.low:+.2f}..{delta.high:+.2f}"
        parts.append(f"{name.replace('_', ' ')} {behaviour.tuned[name].value:.2f} (base model "
                     f"{behaviour.base[name].value:.2f}; {interval}, n={delta.samples})")
    return "; ".join(parts)


def generator_description(result: GeneratorResult, params: Params, data_md5: str, seconds: float, run_id: str,
                          behaviour: BehaviourComparison | None, planted: int) -> str:
    p = params
    steps = len(result.history)
    seen = steps * p.generator.batch_size * p.generator.grad_accum
    stop = (f"stopped early at step {steps} of {p.generator.max_steps} (held-out loss stopped improving)"
            if result.stopped_early else f"{steps} steps")
    resumed = f", resumed from checkpoint step {result.resumed_from_step}" if result.resumed_from_step else ""
    return (f"Generator: LoRA r={p.generator.lora_r} on {p.models.generator} (base referenced, not copied). "
            f"Trained on generator.jsonl (md5 {data_md5}; {result.train_examples} training examples, "
            f"{len(result.holdout)} held out; {planted} of its examples with an instruction planted in their "
            f"context): {stop}{resumed}, {seen} examples seen "
            f"({seen / max(1, result.train_examples):.2f} epochs), {seconds:.0f} s on {p.project.device}; weights "
            f"from step {result.best_step}, held-out loss {result.best_eval_loss:.3f}; training step in {result.precision}. "
            f"Held-out behaviour, fine-tuned vs base model on the same context (paired bootstrap): "
            f"{behaviour_sentence(behaviour)}. Run {run_id}.")
