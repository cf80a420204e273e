"""Generator LoRA on a tiny random Llama: only adapter weights change; loss masks the prompt."""

import dataclasses

import pytest
import torch

from components.config import GeneratorConfig, Settings
from components.models import resolve_model
from components.training.generator import (IGNORE_INDEX, encode_example, generate_answers, load_generator,
                                           load_tokenizer, pad_batch, save_generator, train_generator)
from tests.conftest import read_jsonl

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tiny_llama() -> str:
    return resolve_model("tiny:llama", Settings().models_dir)


@pytest.fixture(scope="module")
def examples(project_root) -> list[dict]:
    return read_jsonl(project_root / "data" / "raw" / "generator.jsonl")[:12]


def test_labels_cover_only_the_answer(tiny_llama, examples):
    tokenizer = load_tokenizer(tiny_llama)
    row = encode_example(tokenizer, examples[0], GeneratorConfig())
    answer_len = len(tokenizer(examples[0]["answer"], add_special_tokens=False)["input_ids"]) + 1
    assert row["labels"][-answer_len:] == row["input_ids"][-answer_len:]
    assert set(row["labels"][:-answer_len]) == {IGNORE_INDEX}


def test_dynamic_padding_pads_to_the_longest_row():
    batch = pad_batch([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}], 0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_training_changes_only_adapter_weights(tiny_llama, examples, tmp_path):
    config = dataclasses.replace(GeneratorConfig(), max_steps=3, batch_size=2, learning_rate=1e-2,
                                 max_length=256)
    from transformers import AutoModelForCausalLM

    base_before = AutoModelForCausalLM.from_pretrained(tiny_llama).state_dict()
    result = train_generator(examples, tiny_llama, config, seed=3)
    assert len(result.history) == 3 and all(h["tokens_per_s"] > 0 for h in result.history)

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
