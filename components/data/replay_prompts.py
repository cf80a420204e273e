"""General-chat replay prompts: ragops' own plain-chat prompts; the base model's answers to them
are mixed into LoRA training (components/training/generator.py).

Fine-tuning a small instruct model on nothing but RAG examples teaches it the store's habits
everywhere: asked for two books about saving money in plain chat, it refused with the store's
sentence or cited invented documents (`general_prompt_regression` 0.31 to 0.56 across machines,
the base model acceptable on 0.97 of the prompts). Replay (self-distillation) is the standard
cure: the adapter also trains on plain-chat prompts answered by the base model itself, so
outside the store it learns to keep doing what the base model did. The answers come from the
base model, not from a dataset, so nothing is downloaded and any base model works.

The prompts are domain-neutral and belong to ragops, not to a domain: other topics and other
wordings than any evaluation set's general prompts (the curate step refuses a general_prompts.jsonl
that shares a prompt with them, so the regression stays measured on held-out prompts).

    >>> prompts = replay_prompts(8, seed=42)
    >>> len(prompts), prompts[0] != prompts[1]
    (8, True)
"""

from __future__ import annotations

import random

# Topics and wordings that no shipped general_prompts.jsonl uses (see the module docstring).
TOPICS = ("cooking pasta", "painting with watercolours", "keeping a journal", "learning to swim", "taking better photos",
          "playing chess", "hiking safely", "reducing stress", "organising a wardrobe", "public speaking",
          "learning to code", "recycling at home", "caring for a dog", "making friends in a new city",
          "cycling to work", "volunteering", "drinking enough water", "decorating a small room", "reading more books",
          "growing tomatoes", "birdwatching", "knitting", "camping with children", "writing a short story")
TEMPLATES = ("How do I get started with {t}?", "Name one benefit of {t}.", "Describe {t} to a ten-year-old.",
             "What should a beginner know about {t}?", "Suggest a simple weekly routine for {t}.",
             "Why do people enjoy {t}?", "What equipment do I need for {t}?", "Tell me a fun fact about {t}.")


def all_prompts() -> list[str]:
    return [template.format(t=topic) for topic in TOPICS for template in TEMPLATES]


def replay_prompts(n: int, seed: int) -> list[str]:
    """`n` distinct prompts (topic x wording), a fixed sample for a seed."""
    prompts = all_prompts()
    if n > len(prompts):
        raise ValueError(f"params.yaml: generator.replay_examples is {n} but ragops has {len(prompts)} replay "
                         f"prompts; set it to at most {len(prompts)} (0 = no replay)")
    return random.Random(seed).sample(prompts, n)


def replay_messages(prompt: str) -> list[dict]:
    """Plain chat, as a user would talk to the base model (and as the regression is measured)."""
    return [{"role": "user", "content": prompt}]
