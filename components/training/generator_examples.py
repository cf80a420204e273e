"""What generator training learns from: the held-out split (no held-out question is trained on),
examples encoded with labels on the answer only, batches planned by length and left-padded so every
answer ends its row, and the base model's own answers to plain-chat prompts replayed beside them.

    >>> train, holdout = split_for_generator(examples, 48, seed=42, check_refuses=True)  # doctest: +SKIP
    >>> rows = [encode_example(tokenizer, ex, params.generator) for ex in train]  # doctest: +SKIP
"""

from __future__ import annotations

import random

import torch

from components.config import GeneratorConfig
from components.data.replay_prompts import replay_messages, replay_prompts
from components.models.generator import generate_answers
from components.prompting import build_messages, render_chat, special_tokens, without_special_tokens

IGNORE_INDEX = -100  # the label of a prompt position: no loss there
# Over this share of training examples longer than generator.max_length, training stops with an
# error instead of learning from what is left (the first Python FAQ run skipped all of its answers).
MAX_SKIPPED_SHARE = 0.25


def example_messages(example: dict, config: GeneratorConfig) -> list[dict]:
    if "messages" in example:  # a replay example: plain chat, no store prompt or context
        return example["messages"]
    return build_messages(example["question"], [(c["doc_id"], c["text"]) for c in example["context"]],
                          config.system_prompt)


def encode_example(tokenizer, example: dict, config: GeneratorConfig) -> dict[str, list[int]] | None:
    """Token ids with labels on the answer only (prompt positions are IGNORE_INDEX).
    None when the example does not fit max_length: cutting it would drop the system prompt or
    the document holding the answer, and training on that teaches the wrong thing."""
    prompt_ids = tokenizer(render_chat(tokenizer, example_messages(example, config)), add_special_tokens=False)["input_ids"]
    answer = without_special_tokens(example["answer"], special_tokens(tokenizer))
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if example.get("finished", True):  # a replay answer cut at its token limit does not end there
        answer_ids.append(tokenizer.eos_token_id)
    if len(prompt_ids) + len(answer_ids) > config.max_length:
        return None
    return {"input_ids": list(prompt_ids) + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def pad_batch(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad to the longest row in the batch (not to max_length), so each row's answer ends
    at the last position; position ids restart at 0 after the padding."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = [[pad_id] * (width - len(r["input_ids"])) + r["input_ids"] for r in rows]
    labels = [[IGNORE_INDEX] * (width - len(r["labels"])) + r["labels"] for r in rows]
    mask = torch.tensor([[0] * (width - len(r["input_ids"])) + [1] * len(r["input_ids"]) for r in rows])
    answer_window = max(len(r["labels"]) - _first_label(r["labels"]) for r in rows)
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0), "answer_window": torch.tensor(answer_window)}


def _first_label(labels: list[int]) -> int:
    return next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)


def plan_batches(lengths: list[int], batch_size: int, n_batches: int, seed: int, group_by_length: bool,
                 group_factor: int = 16) -> list[list[int]]:
    """`n_batches` batches of example indices, epoch after epoch, fixed by the seed.

    With grouping, each epoch's shuffled order is cut into groups of `group_factor` batches and
    sorted by length inside each group: batches hold rows of similar length (little padding)
    while the order across the epoch stays random."""
    rng = random.Random(seed)
    plan: list[list[int]] = []
    while len(plan) < n_batches:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        groups = [order[i : i + batch_size * group_factor] for i in range(0, len(order), batch_size * group_factor)]
        epoch: list[list[int]] = []
        for group in groups:
            if group_by_length:
                group = sorted(group, key=lambda i: lengths[i])
            epoch += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
        if group_by_length:
            rng.shuffle(epoch)
        plan += epoch
    return plan[:n_batches]


def split_holdout(examples: list[dict], n_holdout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, holdout). Half of the holdout (as far as there are enough) is unanswerable, so the
    refusal rate is measured on as many examples as the citation accuracy. A question asked in a
    held-out example is never trained on, not even with another context (its RAFT twin is dropped)."""
    if n_holdout == 0:
        return list(examples), []
    rng = random.Random(seed)
    answerable = [e for e in examples if e.get("answerable", True)]
    unanswerable = [e for e in examples if not e.get("answerable", True)]
    rng.shuffle(answerable)
    rng.shuffle(unanswerable)
    n_unanswerable = min(n_holdout // 2, len(unanswerable) // 2)
    holdout = answerable[: n_holdout - n_unanswerable] + unanswerable[:n_unanswerable]
    held = {id(e) for e in holdout}
    held_questions = {_question_key(e) for e in holdout}
    return [e for e in examples if id(e) not in held and _question_key(e) not in held_questions], holdout


def split_for_generator(examples: list[dict], n_holdout: int, seed: int,
                        check_refuses: bool) -> tuple[list[dict], list[dict]]:
    """`split_holdout`'s split (the one the answerability check trains on) with what the generator
    does not learn left out: the examples marked `check_only` (near misses a small generator cannot
    tell apart by name), and every unanswerable example when the answerability check makes the
    refusal decision (`check_refuses`, generator.refusal_check). The generator then learns to answer
    from its context, and its evaluation loss and held-out behaviour measure that.
    Why: the 135M generator learns refusal from wordings, not from what its context holds. Trained
    on the demo's unanswerable examples (seed 1, fp32, 96 steps), it refused "How many of the
    <product> are left in the shop?" with the product's chunk in its context on 14 of the 28 golden
    stock questions, and 26 of the 53 unanswerable ones. Served after the check, its refusals raised
    the false-refusal rate from 0.03 (check alone) to 0.20 and the refusal accuracy by 0.006."""
    train, holdout = split_holdout(examples, n_holdout, seed)

    def learnt(example: dict) -> bool:
        return not example.get("check_only") and (example.get("answerable", True) or not check_refuses)

    return [e for e in train if learnt(e)], [e for e in holdout if learnt(e)]


def _question_key(example: dict) -> str:
    return " ".join(example["question"].lower().split())


def replay_examples(model, tokenizer, config: GeneratorConfig, seed: int) -> list[dict]:
    """`generator.replay_examples` plain-chat prompts answered by the base model itself (the adapter
    switched off), greedy: the same base model and seed give the same examples
    (components/data/replay_prompts.py says why)."""
    if not config.replay_examples:
        return []
    prompts = replay_prompts(config.replay_examples, seed)
    with model.disable_adapter():
        answers = generate_answers(model, tokenizer, [replay_messages(p) for p in prompts],
                                   config.replay_max_new_tokens, progress="generator: replay answers (base model)")
    # An answer as long as the limit was cut there (the decoded text re-encodes to about as many tokens).
    return [{"id": f"replay-{i + 1:03d}", "messages": replay_messages(prompt), "answer": answer,
             "finished": len(tokenizer(answer, add_special_tokens=False)["input_ids"]) < config.replay_max_new_tokens - 1}
            for i, (prompt, answer) in enumerate(zip(prompts, answers))]


def check_lengths(tokenizer, train: list[dict], encoded: list[dict | None], config: GeneratorConfig) -> None:
    """Stop before training when more than MAX_SKIPPED_SHARE of the training examples are longer
    than generator.max_length: the rest (and the replayed plain chat) would be all the adapter
    learns, and it would pass for trained. Names the first such example and what to change."""
    skipped = [ex for ex, e in zip(train, encoded, strict=True) if e is None]
    if len(skipped) <= MAX_SKIPPED_SHARE * len(train):
        return
    first = skipped[0]
    tokens = len(tokenizer(render_chat(tokenizer, example_messages(first, config)) + first["answer"],
                           add_special_tokens=False)["input_ids"])
    raise ValueError(
        f"generator.jsonl: {len(skipped)} of {len(train)} training examples are longer than "
        f"generator.max_length={config.max_length} tokens and would be skipped (first: {first.get('id', '?')}, "
        f"{tokens} tokens with the system prompt and its {len(first.get('context', []))} context chunks). "
        f"Raise generator.max_length, or make the contexts shorter (index.chunk_words, index.top_k, and the "
        f"examples' context chunks to match)")
