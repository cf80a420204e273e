"""Each inference engine answers what transformers answers (greedy, the same tokens), in batches and
one at a time, whether conversations share their system turn, open with different ones, or have
none, in the order they were asked; and a bundle's generator, a LoRA adapter on the base model,
answers alike through each of them. A tiny random Llama: a few seconds per engine."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoTokenizer

from components.assistant import ENGINES, Assistant, Manifest, engine_target
from components.models.engine_cache import convert, convert_in_child, weights_key
from components.models.generator import generate_answers, load_base_generator, load_generator, load_tokenizer
from components.models.resolve import build_tiny_llama
from components.prompting import build_messages

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = str(build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # As built, the random model ends every answer at once; weights scaled up and the end token's
    # row zeroed make it say 12 tokens of its own, which is what the engines must reproduce.
    model = load_base_generator(folder)
    with torch.no_grad():
        for weights in model.parameters():
            weights.mul_(3)
        model.get_input_embeddings().weight[tokenizer.eos_token_id] = 0
    model.save_pretrained(folder)
    shop, other = "You are the store assistant. Cite [doc-id].", "You answer in one word."
    docs = [("p-001", "Kettle Air: Price: 84.99 USD. In stock: 5 units."), ("p-002", "Watch Air: battery 7 days.")]
    conversations = [build_messages("How much is the Kettle Air?", docs, shop),
                     build_messages("Is the Watch Air waterproof?", docs[1:], other),
                     [{"role": "user", "content": "hello there"}],
                     build_messages("Any kettles in stock?", docs[:1], shop),
                     build_messages("What is the battery life?", docs, shop)]
    expected = generate_answers(load_base_generator(folder), tokenizer, conversations, max_new_tokens=12)
    assert len(set(expected)) == len(expected) and all(len(tokenizer(a)["input_ids"]) >= 8 for a in expected)
    return folder, tokenizer, conversations, expected, {shop, other}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_answers_match_transformers_batched_and_one_at_a_time(name, tiny, tmp_path):
    folder, tokenizer, conversations, expected, system_turns = tiny
    engine = ENGINES[name]
    generator = engine.generator(convert(lambda scratch: folder, tmp_path / "converted", engine.convert_folder), tokenizer)
    assert generator.generate(conversations, max_new_tokens=12) == expected
    assert [generator.generate([c], max_new_tokens=12)[0] for c in conversations] == expected  # one at a time, as served
    if name == "ctranslate2":
        assert set(generator._system_turns) == system_turns  # each system turn's tokens computed once, state shared


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    """A LoRA adapter on the tiny Llama, saved as training saves one, and its answers through
    transformers, the adapter merged."""
    folder, tokenizer, conversations, _, _ = tiny
    torch.manual_seed(1)
    model = get_peft_model(load_base_generator(folder), LoraConfig(task_type=TaskType.CAUSAL_LM, r=4,
                                                                   target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, weights in model.named_parameters():
            if "lora_B" in name:  # zero as initialised: the adapter would change nothing
                weights.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("adapter") / "generator"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    merged, _ = load_generator(str(path), folder)
    return str(path), generate_answers(merged.merge_and_unload(), tokenizer, conversations, max_new_tokens=12)


def test_a_bundles_generator_answers_alike_through_every_engine_and_loads_only_what_it_uses(tiny, adapter, tmp_path):
    """What a bundle serves: the adapter merged and converted for the engine (in a child process as
    a large model is, or in the bundle's process as a model this small is), or transformers'
    generator, loaded only when the bundle answers through transformers."""
    folder, _, conversations, base_answers, _ = tiny
    adapter_path, expected = adapter
    assert expected != base_answers  # the adapter changes what the model says
    manifest = Manifest(encoder="e", generator_base="g", collection="c", intents=["catalog"], top_k=3, hybrid_alpha=0.5,
                        confidence_threshold=0.5, fallback_intent="catalog", system_prompt="", out_of_scope_reply="",
                        max_new_tokens=12, router_max_length=64)
    key = weights_key(adapter_path, folder)
    # OpenVINO's conversion made in a child (a large model's way), which the bundle then finds in its cache
    convert_in_child(ENGINES["openvino"].convert_folder, folder, adapter_path, engine_target(tmp_path, "openvino", key))
    for name in ("transformers", *sorted(ENGINES)):
        assistant = Assistant(dataclasses.replace(manifest, inference_engine=name), None, None, None,
                              load_tokenizer(adapter_path), None, None, base_path=folder, generator_adapter=adapter_path,
                              engine_cache=tmp_path, engine_keys={True: key})
        assert assistant.generate(conversations) == expected, name
        assert ("transformers" in assistant.engines) == (name == "transformers"), name
