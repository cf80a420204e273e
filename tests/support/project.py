"""Project copies for tests: a fresh clone-like copy of the checkout, params overrides, and the one
tiny profile every pipeline test runs on (random tiny models, the evaluation cut to a few samples)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The tiny profile: random tiny models (built from a config, no download) and an evaluation of a
# few samples per metric, so a whole `ragops run` takes about a minute. The random tiny generator
# never states a price or cites, so only retrieval is gated (and compared with the champion): the
# pipeline's mechanics pass or fail on it, never the model's quality (the real SmolLM2 e2e test
# runs on the default gates). A step whose service is down is retried once, a second later (the
# defaults wait 10 s, then 20 s).
TINY = {
    "models": {"generator": "tiny:llama"},
    # the tiny model's character-level tokenizer makes examples ~700 tokens long
    # no answerability check (minutes of encoder training): tests/model/test_answerability.py trains
    # one, the trained-generator e2e serves one; 4 replayed answers instead of 48
    "generator": {"max_steps": 2, "warmup_steps": 0, "max_new_tokens": 8, "max_length": 1024, "holdout_examples": 2,
                  "replay_examples": 4, "refusal_check": False},
    "router": {"epochs": 1},
    "evaluation": {"max_questions": 6, "ablation_questions": 4, "general_prompts": 4, "freshness_probes": 2,
                   "min_samples": {"freshness_retrieval": 2},
                   "latency_questions": 2, "injection_attacks": 4, "bootstrap_resamples": 200,
                   "gates": {"retrieval_recall_at_k": 0.5}, "non_inferiority": {"retrieval_recall_at_k": 0.05}},
    "orchestration": {"retries": 1, "retry_delay_seconds": 1},
}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def copy_project(root: Path, target: Path) -> Path:
    """A fresh copy of the project's tracked and new files (what a clone would hold), as its own
    git repository so DVC runs as it does for a user."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                            text=True, check=True).stdout.split()
    for rel in listed:
        src = root / rel
        if src.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=target, check=True)
    return target


def update_params(repo: Path, overrides: dict) -> None:
    """Set params.yaml keys section by section, as a user edits the file ({"router": {"epochs": 1}}
    changes that key and keeps the rest of the section)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(params.get(section), dict):
            params[section].update(values)
        else:
            params[section] = values
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def project_copy(root: Path, target: Path, overrides: dict | None = None) -> Path:
    repo = copy_project(root, target)
    update_params(repo, overrides or {})
    return repo


def tiny_overrides(**changes: dict) -> dict:
    """The tiny profile with some keys changed, section by section."""
    return {section: {**TINY.get(section, {}), **changes.get(section, {})} for section in {*TINY, *changes}}


def tiny_project(root: Path, target: Path, **changes: dict) -> Path:
    return project_copy(root, target, tiny_overrides(**changes))


def documents(repo: Path, pattern: str = "p-*.md") -> list[Path]:
    return sorted((repo / "data" / "raw" / "documents").glob(pattern))


def front_matter(path: Path) -> dict:
    return yaml.safe_load(path.read_text().split("---\n")[1])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def edit_first_product(repo: Path, old: str, new: str) -> None:
    edit(documents(repo)[0], old, new)


def set_price(doc: Path, price: float) -> None:
    """A catalog edit: the price in the front matter and in the text."""
    old = front_matter(doc)["price"]
    doc.write_text(doc.read_text().replace(f"price: {old}", f"price: {price}").replace(f"Price: {old:.2f}",
                                                                                     f"Price: {price:.2f}"))
