"""Each inference engine answers what transformers answers (greedy, the same tokens), in batches and
one at a time, whether conversations share their system turn, open with different ones, or have
none, in the order they were asked. A tiny random Llama: a few seconds per engine."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from components.assistant import ENGINES
from components.models.engine_cache import convert
from components.models.generator import generate_answers, load_base_generator
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
