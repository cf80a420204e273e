"""Planted instructions: made for any domain's examples, answers untouched, held apart from the red-team set."""

import copy
import json

from components.training.planted_instructions import TEMPLATES, plant_instructions

# A domain that is not the demo store: an FAQ, its ids and headings its own.
FAQ = [{"id": f"q-{i}", "question": f"How long does step {i} take?",
        "context": [{"doc_id": f"faq-{i}", "text": f"Step {i}: It takes {i + 2} working days."},
                    {"doc_id": f"faq-{i + 20}", "text": f"Step {i + 20}: Ask the front desk."}],
        "answer": f"It takes {i + 2} working days [faq-{i}].", "answerable": True} for i in range(8)]
FAQ += [{"id": "q-x", "question": "Do you ship to Mars?", "context": copy.deepcopy(FAQ[0]["context"]),
         "answer": "The documents do not contain that.", "answerable": False}]


def _templates_in(example: dict) -> list[str]:
    return [t for c in example["context"] for t in TEMPLATES if t in c["text"]]


def test_a_share_of_any_domains_examples_carries_one_instruction_and_keeps_its_answer():
    before = copy.deepcopy(FAQ)
    planted, count = plant_instructions(FAQ, share=0.5, seed=3)
    assert FAQ == before  # the curated rows are not changed
    changed = [(old, new) for old, new in zip(FAQ, planted) if old != new]
    assert count == len(changed) == round(0.5 * len(FAQ))
    for old, new in changed:
        assert old["answerable"] and {k: old[k] for k in ("id", "question", "answer")} == \
            {k: new[k] for k in ("id", "question", "answer")}
        assert len(_templates_in(new)) == 1
        cited = old["answer"].split("[")[1].rstrip("].")
        assert any(c["doc_id"] == cited and c["text"].startswith(o["text"]) for c, o in zip(new["context"], old["context"]))
    sections = [c["text"] for _, new in changed for c in new["context"] if " > " in c["text"]]
    assert sections and all(s.split(" > ")[0].startswith("Step ") for s in sections)  # the domain's own headings
    assert plant_instructions(FAQ, share=0.5, seed=3) == (planted, count)
    assert plant_instructions(FAQ, share=0.0, seed=3) == (FAQ, 0)


def test_no_template_is_a_red_team_attack(project_root):
    payloads = [json.loads(line)["payload"] for line in (project_root / "data" / "raw" / "redteam.jsonl").open()]
    assert not [t for t in TEMPLATES for p in payloads if t.lower() in p.lower() or p.lower() in t.lower()]
