"""What the reliability tests share: a project copy on tiny models whose steps retry fast, and
the CLI run as a subprocess with the environment a test gives it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import BIN
from tests.e2e.test_cli import _project

TINY = {
    "models": {"generator": "tiny:llama"},
    "generator": {"max_steps": 2, "warmup_steps": 0, "max_new_tokens": 8, "max_length": 1024, "holdout_examples": 2},
    "router": {"epochs": 1},
    # the random tiny generator never cites: retrieval is what can pass
    "evaluation": {"max_questions": 6, "gates": {"retrieval_recall_at_k": 0.5},
                   "non_inferiority": {"retrieval_recall_at_k": 0.05}, "injection_attacks": 4},
    # a step whose service is down is retried once, a second later (the defaults wait 10 s, then 20 s)
    "orchestration": {"retries": 1, "retry_delay_seconds": 1},
}


def tiny_project(project_root: Path, tmp_path: Path, **overrides: dict) -> Path:
    return _project(project_root, tmp_path, {k: {**TINY.get(k, {}), **overrides.get(k, {})}
                                             for k in {*TINY, *overrides}})


def ragops(repo: Path, *args: str, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    full = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), "COLUMNS": "200", **(env or {})}
    full.pop("PREFECT_API_URL", None)  # a user's run starts its own temporary Prefect server
    return subprocess.run([str(BIN / "ragops"), *args], cwd=repo, env=full, capture_output=True, text=True,
                          timeout=timeout)


def output(run: subprocess.CompletedProcess) -> str:
    return run.stdout + run.stderr


def ledger(repo: Path) -> list[dict]:
    path = repo / ".ragops" / "promotions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def champion(client: MlflowClient, name: str = "ragops-assistant") -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases["champion"]) if "champion" in aliases else None


def edit_first_product(repo: Path, old: str, new: str) -> None:
    doc = sorted((repo / "data" / "raw" / "documents").glob("p-*.md"))[0]
    text = doc.read_text()
    assert old in text, (doc, old)
    doc.write_text(text.replace(old, new, 1))


@pytest.fixture()
def tiny_repo(project_root, tmp_path) -> Path:
    return tiny_project(project_root, tmp_path)
