"""The CLI as a user runs it, on a fresh copy of the project (its own git repo, DVC remote,
MLflow store and Weaviate data): `ragops run`, then `ragops ask`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import copy_project

pytestmark = pytest.mark.e2e
RAGOPS = str(Path(sys.executable).parent / "ragops")


def _project(project_root: Path, tmp_path: Path, overrides: dict) -> Path:
    repo = copy_project(project_root, tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


def _ragops(repo: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)  # a user's run starts its own temporary Prefect server
    return subprocess.run([RAGOPS, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


def _front_matter(path: Path) -> dict:
    return yaml.safe_load(path.read_text().split("---\n")[1])


def _ledger(repo: Path) -> list[dict]:
    return [json.loads(line) for line in (repo / ".ragops" / "promotions.jsonl").read_text().splitlines()]


def test_untrained_tiny_generator_is_held_back(project_root, tmp_path):
    """A random tiny generator cannot state prices: the key-fact gate must stop it."""
    repo = _project(project_root, tmp_path, {
        "models": {"generator": "tiny:llama"},
        # the tiny model's character-level tokenizer makes examples ~700 tokens long
        "generator": {"max_steps": 2, "warmup_steps": 0, "max_new_tokens": 16, "max_length": 1024,
                      "holdout_examples": 4},
        "router": {"epochs": 1},
        "evaluation": {"max_questions": 8},
    })
    run = _ragops(repo, "run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "challenger" in run.stdout and "key_fact_accuracy" in run.stdout

    client = MlflowClient(f"sqlite:///{repo / '.ragops' / 'mlflow.db'}")
    held = client.get_model_version_by_alias("ragops-assistant", "challenger")
    assert held.tags["gates_passed"] == "False"
    assert "key_fact_accuracy" in held.tags["gate_reasons"]
    assert set(held.tags) >= {"data.documents.jsonl.md5", "data.router.jsonl.md5", "router_version", "collection"}
    evaluated = client.get_run(held.tags["run_id"])
    assert {d.dataset.digest for d in evaluated.inputs.dataset_inputs} == {
        v for k, v in held.tags.items() if k.startswith("data.")}
    assert "champion" not in client.get_registered_model("ragops-assistant").aliases
    assert [(e["action"], e["version"]) for e in _ledger(repo)] == [("hold", str(held.version))]

    ask = _ragops(repo, "ask", "How much does the Kettlo Glass Kettle cost?")
    assert ask.returncode == 2 and "no champion" in ask.stdout

    reviewed = _ragops(repo, "review", timeout=300)
    assert reviewed.returncode == 0 and "failed" in reviewed.stdout and "key_fact_accuracy" in reviewed.stdout
    refused = _ragops(repo, "promote", str(held.version), timeout=300)
    assert refused.returncode == 2 and "did not pass its gates" in refused.stdout, refused.stdout + refused.stderr
    assert "champion" not in client.get_registered_model("ragops-assistant").aliases


def test_trained_generator_is_promoted_and_answers_with_citations(project_root, tmp_path):
    """The real SmolLM2 generator, briefly fine-tuned, passes the gates; `ragops ask` answers
    from the champion with a citation that points at a retrieved document."""
    repo = _project(project_root, tmp_path, {
        "generator": {"holdout_examples": 8},  # default steps: a shorter run does not reliably pass the gates
        "router": {"epochs": 2},
        "evaluation": {"max_questions": 10},
    })
    run = _ragops(repo, "run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "champion" in run.stdout and "citations:" in run.stdout

    product = _front_matter(sorted((repo / "data" / "raw" / "documents").glob("p-*.md"))[0])
    ask = _ragops(repo, "ask", "--json", f"How much does the {product['name']} cost?")
    assert ask.returncode == 0, ask.stdout[-3000:] + ask.stderr[-3000:]
    answer = json.loads(ask.stdout.strip().splitlines()[-1])
    retrieved = {c["doc_id"] for c in answer["chunks"]}
    assert answer["route"] == "catalog" and product["id"] in retrieved
    assert answer["citations"], answer
    assert set(answer["citations"]) <= retrieved
    assert f"{product['price']:.2f}" in answer["answer"]

    client = MlflowClient(f"sqlite:///{repo / '.ragops' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("ragops-assistant", "champion")
    assert champion.tags["gates_passed"] == "True"
    assert [e["action"] for e in _ledger(repo)] == ["promote"]

    undo = _ragops(repo, "rollback", timeout=300)  # the first champion has nothing before it
    assert undo.returncode == 2 and "none to roll back to" in undo.stdout, undo.stdout + undo.stderr
    assert client.get_model_version_by_alias("ragops-assistant", "champion").version == champion.version


def test_bad_params_stop_before_any_work(project_root, tmp_path):
    repo = _project(project_root, tmp_path, {"router": {"lr": 0.1}})
    run = _ragops(repo, "run", timeout=300)
    assert run.returncode == 2
    assert "unknown key 'router.lr'" in run.stdout and "Traceback" not in run.stdout + run.stderr
    assert not (repo / ".ragops" / "mlflow.db").exists()
    assert not (repo / "data" / "curated" / "documents.jsonl").exists()
