"""The generator's answers through CTranslate2, an inference engine made for CPUs.

Why: one answer at a time (what a customer waits for) p50 1.33 s against 1.94 s with transformers,
the same answer to each of the 171 golden questions (demo champion, SmolLM2-135M with its adapter
merged, 2-core AMD EPYC; benchmarks/answer_engines.py, docs/serving.md): transformers spends most
of a generated token in Python, CTranslate2 in one C++ loop. int8 weights answered in 0.85 s but
lost key facts (0.824 against 0.863 on the golden set), so float32 it is.

The engine reads its own model format: the generator is converted once into the engine cache
(components/models/engine_cache.py).

    >>> engine = Ct2Generator(convert(lambda scratch: base_folder, cache / key, convert_folder), tokenizer)  # doctest: +SKIP
    >>> engine.generate([[{"role": "user", "content": "Hi"}]], max_new_tokens=48)  # doctest: +SKIP
    ['Hello! How can I help you today?']
"""

from __future__ import annotations

from pathlib import Path

import ctranslate2
import torch
from ctranslate2.converters import TransformersConverter

from components.prompting import render_chat

VERSION = ctranslate2.__version__  # part of a conversion's name in the cache (components/models/engine_cache.py)


def convert_folder(folder: str, out: str) -> None:
    """A transformers model folder in CTranslate2's format (~13 s for SmolLM2-135M on 2 cores)."""
    TransformersConverter(folder).convert(out, force=True)


class Ct2Generator:
    """Greedy answers for chat conversations, as components/models/generator.py gives them."""

    def __init__(self, model_dir: Path, tokenizer, compute_type: str = "float32", share_system_turn: bool = True) -> None:
        # compute_type and share_system_turn other than the defaults: for benchmarks/answer_engines.py's comparison
        self.model_dir, self.tokenizer, self.share_system_turn = Path(model_dir), tokenizer, share_system_turn
        self._system_turns: dict[str, tuple[str, ...]] = {}  # system prompt -> its turn's tokens
        self.engine = ctranslate2.Generator(str(model_dir), device="cpu", compute_type=compute_type,
                                            intra_threads=torch.get_num_threads())

    def generate(self, conversations: list[list[dict]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
        if not conversations:
            return []
        tok = self.tokenizer
        # Conversations that open with the same system turn share its model state: the engine
        # computes it once and keeps it (`static_prompt`), so a prompt is read from where the
        # system turn ends (about a quarter of a RAG prompt; docs/serving.md has the figures).
        groups: dict[tuple[str, ...], list[tuple[int, list[str]]]] = {}
        for i, conversation in enumerate(conversations):
            tokens = self._tokens(render_chat(tok, conversation))
            shared = self.share_system_turn and conversation[0]["role"] == "system"
            prefix = self._system_turn(conversation[0]) if shared else ()
            prefix = prefix if prefix and tuple(tokens[: len(prefix)]) == prefix and len(tokens) > len(prefix) else ()
            groups.setdefault(prefix, []).append((i, tokens[len(prefix):]))
        answers: list[str] = [""] * len(conversations)
        for prefix, members in groups.items():
            for batch in _similar_lengths(members, batch_size):
                results = self.engine.generate_batch([tokens for _, tokens in batch], max_length=max_new_tokens,
                                                     sampling_topk=1, include_prompt_in_result=False,
                                                     end_token=tok.eos_token, static_prompt=list(prefix) or None)
                for (i, _), result in zip(batch, results, strict=True):
                    answers[i] = tok.decode(result.sequences_ids[0], skip_special_tokens=True).strip()
        return answers

    def _tokens(self, text: str) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _system_turn(self, message: dict) -> tuple[str, ...]:
        if message["content"] not in self._system_turns:
            self._system_turns[message["content"]] = tuple(
                self._tokens(render_chat(self.tokenizer, [message], generation_prompt=False)))
        return self._system_turns[message["content"]]


# Prompts of one batch within this many tokens of each other. The engine reads the prompts of a
# batch at once only up to the shortest; the rest of each longer one goes one token per step, as
# slowly as generating. Eight concurrent RAG prompts of 120-235 tokens (serving under load): one
# batch 6.33 s, batches of similar length 5.29 s, one at a time 7.37 s (demo champion, 2-core AMD EPYC).
LENGTH_SPREAD = 24


def _similar_lengths(members: list[tuple[int, list[str]]], batch_size: int) -> list[list[tuple[int, list[str]]]]:
    """The prompts sorted by length, cut into batches of at most `batch_size` whose lengths differ
    by at most LENGTH_SPREAD tokens."""
    batches: list[list[tuple[int, list[str]]]] = []
    for member in sorted(members, key=lambda m: len(m[1])):
        if batches and len(batches[-1]) < batch_size and len(member[1]) - len(batches[-1][0][1]) <= LENGTH_SPREAD:
            batches[-1].append(member)
        else:
            batches.append([member])
    return batches

