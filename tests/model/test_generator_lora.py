"""Generator LoRA on a tiny random Llama: only adapter weights change, the loss covers the answer
only, the fast loss equals the plain one, batches group by length, early stopping keeps the best
weights, and a killed run resumes."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM

from components.config import GeneratorConfig
from components.settings import Settings
from components.models.resolve import resolve_model
from components.data.curate import normalize_question
from components.models.generator import generate_answers, load_generator, load_tokenizer, set_lora_merged
from components.training.generator import answer_loss, evaluation_loss, save_generator, train_generator, training_dtype
from components.training.generator_examples import (
    encode_example, IGNORE_INDEX, pad_batch, plan_batches, replay_examples, split_for_generator, split_holdout,
)
from tests.support.project import ROOT, read_jsonl

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tiny_llama() -> str:
    return resolve_model("tiny:llama", Settings().models_dir)


@pytest.fixture(scope="module")
def examples(project_root) -> list[dict]:
    return read_jsonl(project_root / "data" / "raw" / "generator.jsonl")[:12]


def _config(**changes) -> GeneratorConfig:
    # the generator alone: no replay and no answerability check unless a test asks for them
    base = dict(max_steps=3, batch_size=2, learning_rate=1e-2, max_length=1024, warmup_steps=0, holdout_examples=0,
                early_stopping_patience=0, checkpoint_every=0, replay_examples=0, refusal_check=False)
    return dataclasses.replace(GeneratorConfig(), **{**base, **changes})


def test_labels_cover_only_the_answer(tiny_llama, examples):
    tokenizer = load_tokenizer(tiny_llama)
    row = encode_example(tokenizer, examples[0], _config())
    answer_len = len(tokenizer(examples[0]["answer"], add_special_tokens=False)["input_ids"]) + 1
    assert row["labels"][-answer_len:] == row["input_ids"][-answer_len:]
    assert set(row["labels"][:-answer_len]) == {IGNORE_INDEX}


def test_examples_longer_than_max_length_are_skipped_not_cut(tiny_llama, examples):
    assert encode_example(load_tokenizer(tiny_llama), examples[0], _config(max_length=32)) is None


def test_dynamic_padding_left_pads_to_the_longest_row():
    batch = pad_batch([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}], 0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [0, 0, 4]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [-100, -100, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert int(batch["answer_window"]) == 2


@torch.no_grad()
def test_answer_window_loss_equals_the_plain_full_logits_loss(tiny_llama, examples):
    """The fast path (left padding, LM head on the answer window only) computes the same loss as
    the textbook one (right padding to max_length, logits everywhere, labels to the model)."""
    tokenizer = load_tokenizer(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    rows = [encode_example(tokenizer, ex, _config()) for ex in examples[:3]]
    loss_sum, n_tokens = answer_loss(model, pad_batch(rows, tokenizer.pad_token_id))

    width = 1024
    ids = torch.tensor([r["input_ids"] + [tokenizer.pad_token_id] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [IGNORE_INDEX] * (width - len(r["labels"])) for r in rows])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r["input_ids"]) for r in rows])[:, None]).long()
    plain = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert n_tokens == int((labels != IGNORE_INDEX).sum())
    assert float(loss_sum) / n_tokens == pytest.approx(float(plain), rel=1e-4)


def test_micro_batches_and_gradient_checkpointing_train_as_the_whole_batch(tiny_llama, examples):
    """Micro-batches and gradient checkpointing only bound the activations held at once: the same
    examples per step and the same gradient, so the same losses (micro-batches: up to float
    summation order; recomputed activations, dropout's included: exactly)."""
    results = [train_generator(examples, tiny_llama, _config(batch_size=4, precision="fp32", lora_dropout=0.1, **memory), 0)
               for memory in ({}, {"micro_batch_size": 1}, {"gradient_checkpointing": True})]
    losses = [[h["loss"] for h in result.history] for result in results]
    assert len(losses[0]) == 3 and results[2].model.get_base_model().is_gradient_checkpointing
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert losses[2] == losses[0]


def test_length_grouping_cuts_padding_and_keeps_each_example_once_per_epoch():
    lengths = [(i * 37) % 200 + 50 for i in range(64)]
    grouped = plan_batches(lengths, 4, 16, seed=1, group_by_length=True)
    plain = plan_batches(lengths, 4, 16, seed=1, group_by_length=False)
    assert sorted(i for batch in grouped for i in batch) == list(range(64))

    def padding(plan):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in plan)

    assert padding(grouped) < padding(plain) / 4
    assert plan_batches(lengths, 4, 16, seed=1, group_by_length=True) == grouped  # fixed by the seed


def test_holdout_is_disjoint_and_keeps_unanswerable_examples(project_root):
    rows = read_jsonl(project_root / "data" / "raw" / "generator.jsonl")
    train, holdout = split_holdout(rows, 24, seed=5)
    assert len(holdout) == 24 and len(train) + 24 <= len(rows)
    assert not {r["id"] for r in train} & {r["id"] for r in holdout}
    assert not {r["question"] for r in train} & {r["question"] for r in holdout}  # RAFT twins stay out too
    assert 0 < sum(not r["answerable"] for r in holdout) < 24
    # the generator trains on that split without the check-only examples (the check on all of it)
    check_only = {r["id"] for r in rows if r.get("check_only")}
    assert check_only
    generator_train, generator_holdout = split_for_generator(rows, 24, seed=5, check_refuses=False)
    assert generator_train == [r for r in train if r["id"] not in check_only]
    assert generator_holdout == [r for r in holdout if r["id"] not in check_only]
    # with the check making the refusal decision, the generator learns (and is measured) answering only
    answering_train, answering_holdout = split_for_generator(rows, 24, seed=5, check_refuses=True)
    assert answering_train == [r for r in generator_train if r["answerable"]]
    assert answering_holdout == [r for r in generator_holdout if r["answerable"]] and answering_holdout


def test_training_changes_only_adapter_weights_and_merging_them_is_the_same_model(tiny_llama, examples, tmp_path):
    base_model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    base_before = base_model.state_dict()

    def base_logits(ids):
        return base_model(input_ids=ids).logits
    result = train_generator(examples, tiny_llama, _config(replay_examples=4, replay_max_new_tokens=6), seed=3)
    assert len(result.history) == 3 and all(h["tokens_per_s"] > 0 for h in result.history)
    trained = [e for e in examples if not e.get("check_only")]  # check-only examples teach the check alone
    assert len(trained) < len(examples)
    assert result.replay_examples == 4 and result.train_examples == len(trained) + 4 - result.skipped_too_long
    assert all(h["learning_rate"] > 0 for h in result.history)

    lora_b = {n: p for n, p in result.model.named_parameters() if "lora_B" in n}
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b.values()), "LoRA B starts at zero and must move"
    for name, param in result.model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad
            continue
        assert not param.requires_grad
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(param.detach(), base_before[key]), f"base weight {key} changed"

    adapter = save_generator(result, tmp_path / "adapter")
    saved = {p.name for p in adapter.iterdir()}
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved
    conversation = [[{"role": "user", "content": examples[0]["question"]}]]
    reloaded, tokenizer = load_generator(str(adapter), tiny_llama)
    assert generate_answers(reloaded, tokenizer, conversation, 8) == generate_answers(result.model, result.tokenizer,
                                                                                     conversation, 8)
    # batches run in order of prompt length; the answers come back in the callers' order (none for none)
    longest_first = [[{"role": "user", "content": q}] for q in sorted({ex["question"] for ex in examples[:4]}, key=len)[::-1]]
    one_by_one = [generate_answers(reloaded, tokenizer, [c], 8)[0] for c in longest_first]
    assert generate_answers(reloaded, tokenizer, longest_first, 8, batch_size=1) == one_by_one
    assert generate_answers(reloaded, tokenizer, [], 8) == []

    # Answering with the adapter merged into the weights is the same model, and unmerging gives
    # the base weights back (the base-model answers and a later training see the original).
    ids = tokenizer(examples[0]["question"], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        unmerged = reloaded(input_ids=ids).logits
        set_lora_merged(reloaded, True)
        merged = reloaded(input_ids=ids).logits
        set_lora_merged(reloaded, False)
    assert torch.allclose(merged, unmerged, atol=1e-4) and not torch.allclose(unmerged, base_logits(ids), atol=1e-4)
    for name, param in reloaded.named_parameters():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.allclose(param.detach(), base_before[key], atol=1e-6), f"{key} not restored by unmerging"


def test_early_stopping_stops_after_patience_and_keeps_the_best_evaluated_weights(tiny_llama, project_root):
    """Training answers all say "zzz...", held-out answers "QQQ...": after the first evaluation
    every step makes the held-out answers less likely, so the held-out loss rises from there on
    (measured: +0.03 to +0.08 over the next two evaluations, 3 seeds, fp32 and bf16). Training must
    stop after `patience` evaluations without improvement and return the weights of the best
    evaluation, not the last ones."""
    rows = read_jsonl(project_root / "data" / "raw" / "generator.jsonl")[:40]
    config = _config(max_steps=16, holdout_examples=8, eval_every=2, early_stopping_patience=2)
    held_out = {r["id"] for r in split_holdout(rows, config.holdout_examples, seed=0)[1]}
    rows = [{**r, "answer": "Q" * 60 if r["id"] in held_out else "z" * 60} for r in rows]
    result = train_generator(rows, tiny_llama, config, seed=0)

    assert result.stopped_early and len(result.history) == result.evals[-1]["step"] < config.max_steps
    best = min(result.evals, key=lambda e: e["eval_loss"])
    assert result.best_step == best["step"]
    later = [e for e in result.evals if e["step"] > best["step"]]
    assert len(later) == config.early_stopping_patience
    encoded = [e for e in (encode_example(result.tokenizer, ex, config) for ex in result.holdout) if e is not None]
    kept = evaluation_loss(result.model, encoded, result.tokenizer.pad_token_id, config.batch_size, "cpu",
                           training_dtype(config.precision, "cpu"))
    assert kept == pytest.approx(best["eval_loss"], rel=1e-4)
    assert kept < min(e["eval_loss"] for e in later)  # the kept weights are not the last ones


KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import components.training.generator as generator
    from components.config import GeneratorConfig

    config = GeneratorConfig(**json.loads(sys.argv[1]))
    examples = [json.loads(line) for line in open(sys.argv[2])][:12]
    real_loss, calls = generator.answer_loss, []

    def loss_then_die(model, batch):
        calls.append(1)
        if len(calls) == int(sys.argv[4]):  # a real SIGKILL in the middle of this training step
            os.kill(os.getpid(), signal.SIGKILL)
        return real_loss(model, batch)

    generator.answer_loss = loss_then_die
    generator.train_generator(examples, sys.argv[3], config, seed=11, checkpoint_root=Path(sys.argv[5]))
""")


def test_a_killed_run_resumes_from_its_last_checkpoint(tiny_llama, tmp_path):
    config = _config(max_steps=8, checkpoint_every=3, target_modules=("q_proj", "v_proj"))
    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    data = ROOT / "data" / "raw" / "generator.jsonl"
    checkpoints = tmp_path / "checkpoints"
    import json

    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(raw), str(data), tiny_llama, "8",
                             str(checkpoints)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (job,) = checkpoints.iterdir()
    assert sorted(p.name for p in job.iterdir()) == ["step-000003", "step-000006"]

    examples = read_jsonl(data)[:12]
    resumed = train_generator(examples, tiny_llama, config, seed=11, checkpoint_root=checkpoints)
    assert resumed.resumed_from_step == 6
    assert [h["step"] for h in resumed.history] == list(range(1, 9))

    fresh = train_generator(examples, tiny_llama, config, seed=11)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in fresh.history], rel=1e-5)
    fresh_weights = dict(fresh.model.named_parameters())
    for name, param in resumed.model.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(param, fresh_weights[name], rtol=1e-5, atol=1e-6)

    again = train_generator(examples, tiny_llama, config, seed=11, checkpoint_root=checkpoints)
    assert again.resumed_from_step == 8 and len(again.history) == 8  # a finished job is not retrained


def test_replay_examples_are_the_base_models_plain_chat_answers_never_an_evaluation_prompt(tiny_llama, project_root):
    config = _config(replay_examples=5, replay_max_new_tokens=6)
    result = train_generator(read_jsonl(project_root / "data" / "raw" / "generator.jsonl")[:2], tiny_llama,
                             _config(max_steps=0), seed=1)  # an untrained adapter: a model to answer with
    replay = replay_examples(result.model, result.tokenizer, config, seed=1)
    evaluation = {normalize_question(r["prompt"]) for r in read_jsonl(project_root / "data" / "raw" / "general_prompts.jsonl")}
    assert len(replay) == 5 and replay == replay_examples(result.model, result.tokenizer, config, seed=1)
    for example in replay:
        assert example["messages"] == [{"role": "user", "content": example["messages"][0]["content"]}]  # plain chat
        assert normalize_question(example["messages"][0]["content"]) not in evaluation
    # an answer cut at the token limit does not end with EOS in training (it did not end there)
    for finished in (True, False):
        encoded = encode_example(result.tokenizer, {**replay[0], "finished": finished}, config)
        assert (encoded["input_ids"][-1] == result.tokenizer.eos_token_id) == finished


def test_training_stops_when_most_examples_are_longer_than_max_length(tiny_llama, examples):
    """Skipped examples are counted, but an adapter trained on what is left of a quarter or less
    of its data would pass for trained: the error names the file, an example and the keys."""
    with pytest.raises(ValueError, match=r"generator\.jsonl: (\d+) of \1 training .*max_length=32.*first: gen-\d+.*index\.chunk_words"):
        train_generator(examples, tiny_llama, _config(max_length=32), seed=0)
