"""CTranslate2 answers what transformers answers (greedy, the same tokens), whether conversations
share their system turn's state (`static_prompt`), open with different ones, or have none, in the
order they were asked. A tiny random Llama: a few seconds."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from components.models.ct2 import Ct2Generator, convert
from components.models.generator import generate_answers, load_base_generator
from components.models.resolve import build_tiny_llama
from components.prompting import build_messages

pytestmark = pytest.mark.model


def test_ct2_answers_match_transformers_with_shared_and_different_system_turns(tmp_path):
    folder = str(build_tiny_llama(tmp_path / "tiny"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    shop, other = "You are the store assistant. Cite [doc-id].", "You answer in one word."
    docs = [("p-001", "Kettle Air: Price: 84.99 USD. In stock: 5 units."), ("p-002", "Watch Air: battery 7 days.")]
    conversations = [build_messages("How much is the Kettle Air?", docs, shop),
                     build_messages("Is the Watch Air waterproof?", docs[1:], other),
                     [{"role": "user", "content": "hello there"}],
                     build_messages("Any kettles in stock?", docs[:1], shop),
                     build_messages("What is the battery life?", docs, shop)]
    engine = Ct2Generator(convert(lambda scratch: folder, tmp_path / "ct2"), tokenizer)
    expected = generate_answers(load_base_generator(folder), tokenizer, conversations, max_new_tokens=12)
    assert engine.generate(conversations, max_new_tokens=12) == expected
    assert [engine.generate([c], max_new_tokens=12)[0] for c in conversations] == expected  # one at a time, as served
    assert set(engine._system_turns) == {shop, other}  # each system turn's tokens computed once, state shared
