"""The CLI as a user runs it, on a fresh copy of the project (its own git repo, DVC remote,
MLflow store and Weaviate data): `ragops run`, `ask`, `review`, `promote`; the real SmolLM2
generator trained, promoted, asked and served; bad params refused before any work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from components.index.server import weaviate_server
from components.settings import Settings
from tests.support.cli import output, ragops, said, succeeded
from tests.support.processes import free_port, wait_for
from tests.support.project import BIN, documents, front_matter, project_copy, tiny_overrides, update_params
from tests.support.registry import champion, ledger, mlflow_client, version_counts

pytestmark = pytest.mark.e2e


def test_a_candidate_failing_its_gates_is_held_and_a_rerun_redoes_nothing(project_root, champion_repo):
    """The tiny champion's models evaluated on the default gates: the random tiny generator cannot
    state prices, so the key-fact gate holds the bundle back; nothing is retrained for an
    evaluation-only change, the held bundle cannot be promoted by hand, and a rerun with nothing
    changed trains, evaluates and registers nothing."""
    repo = champion_repo
    client = mlflow_client(repo)
    default_gates = yaml.safe_load((project_root / "params.yaml").read_text())["evaluation"]["gates"]
    update_params(repo, {"evaluation": {"gates": default_gates}})
    run = succeeded(ragops(repo, "run"))
    assert run.stdout.count("(reused: same data, params and code)") == 2, run.stdout  # router and generator
    assert "challenger" in run.stdout and "key_fact_accuracy" in run.stdout
    assert "try it with `ragops ask --version 2 QUESTION`" in said(run), run.stdout  # the next step

    held = client.get_model_version_by_alias("ragops-assistant", "challenger")
    assert str(held.version) == "2" and held.tags["gates_passed"] == "False"
    assert "key_fact_accuracy" in held.tags["gate_reasons"]
    assert set(held.tags) >= {"data.documents.jsonl.md5", "data.router.jsonl.md5", "router_version", "collection"}
    evaluated = client.get_run(held.tags["run_id"])
    assert {d.dataset.digest for d in evaluated.inputs.dataset_inputs} == {
        v for k, v in held.tags.items() if k.startswith("data.")}
    assert champion(client) == "1"
    assert [(e["action"], e["version"]) for e in ledger(repo)] == [("promote", "1"), ("hold", "2")]

    reviewed = succeeded(ragops(repo, "review", timeout=300))
    assert "failed" in reviewed.stdout and "key_fact_accuracy" in reviewed.stdout
    tried = succeeded(ragops(repo, "ask", "--json", "--version", "2", "How much is the Kettlo Glass Kettle?",
                             timeout=300))  # a reviewer tries the held candidate
    tried_answer = json.loads(tried.stdout.strip().splitlines()[-1])
    assert tried_answer["route"], tried.stdout
    # its trace was sent before the command exited, tagged with the version asked
    assert client.get_trace(tried_answer["trace_id"]).info.tags["bundle_version"] == "2"
    rated = succeeded(ragops(repo, "feedback", "give", tried_answer["trace_id"], "down", "--correction", "10 USD",
                             timeout=300))
    assert "user_rating, expected_answer" in rated.stdout, output(rated)
    assessments = {a.name: a.value for a in client.get_trace(tried_answer["trace_id"]).info.assessments}
    assert assessments == {"user_rating": "down", "expected_answer": "10 USD"}
    queue = succeeded(ragops(repo, "feedback", "review", timeout=300))
    assert f"{tried_answer['trace_id']}" in queue.stdout and "down-voted, corrected" in queue.stdout, output(queue)
    decided = succeeded(ragops(repo, "feedback", "decide", tried_answer["trace_id"], "--reviewer", "ana", "--golden",
                               "--doc-id", "p-001", "--answer", "It costs 10 USD [p-001].", "--key-fact", "10 USD",
                               timeout=300))
    assert "accepted as golden" in decided.stdout, output(decided)
    assert client.get_trace(tried_answer["trace_id"]).info.tags["review.decision"] == "accepted"
    refused = ragops(repo, "promote", "2", timeout=300)
    assert refused.returncode == 2 and "did not pass its gates" in refused.stdout, output(refused)
    assert champion(client) == "1"

    # Nothing changed: the rerun reuses both models and the earlier evaluation, registers nothing.
    tic = time.monotonic()
    rerun = succeeded(ragops(repo, "run"))
    print(f"no-op rerun: {time.monotonic() - tic:.1f} s")
    assert "nothing changed since bundle v2 was evaluated" in rerun.stdout
    assert rerun.stdout.count("(reused: same data, params and code)") == 2, rerun.stdout
    assert version_counts(client) == {"ragops-router": 1, "ragops-generator": 1, "ragops-assistant": 2}
    assert len(ledger(repo)) == 2


def test_ask_without_a_champion_says_to_run_first(project_root, tmp_path):
    repo = project_copy(project_root, tmp_path / "repo")
    ask = ragops(repo, "ask", "How much does the Kettlo Glass Kettle cost?", timeout=300)
    assert ask.returncode == 2 and "no bundle version yet" in said(ask) and "run `ragops run` first" in said(ask), output(ask)
    assert "Traceback" not in output(ask)


def test_a_service_that_does_not_answer_is_named_without_a_traceback_or_its_password(project_root, tmp_path):
    """`ragops ask` with its MLflow server down (a free port, nothing listening) exits 2 naming the
    service and what to check; the password in the tracking URI is not printed. MLflow's own HTTP
    retries are cut to none (they take minutes: 4m16s measured), which changes nothing else."""
    repo = project_copy(project_root, tmp_path / "repo")
    ask = ragops(repo, "ask", "How much does the Kettlo Glass Kettle cost?", timeout=300, env={
        "RAGOPS_MLFLOW_TRACKING_URI": f"http://ana:s3cret-pw@127.0.0.1:{free_port()}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert ask.returncode == 2 and "a service did not answer" in said(ask), output(ask)
    assert "RAGOPS_MLFLOW_TRACKING_URI" in said(ask) and "Traceback" not in output(ask)
    assert "s3cret-pw" not in output(ask)


def _serve(repo: Path, weaviate_env: dict, port: int) -> subprocess.Popen:
    """`mlflow models serve` on the champion, as a deployment would run it (its own process, the
    registry and Weaviate reached through the environment)."""
    env = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), **weaviate_env,
           "MLFLOW_TRACKING_URI": f"sqlite:///{repo / '.ragops' / 'mlflow.db'}",
           # mlflow runs `uvicorn` from PATH, as in an activated venv
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", "models:/ragops-assistant@champion",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.heavy(longest=True)
# The real generator trained and evaluated, a served model: 18.1-31.6 min beside the other worker
# on a 2-core AMD EPYC without AVX-512, with the host's load (fp32, 48 steps; its `ragops run` alone
# 16.8 min on a busy host); 48.5 min with the 96-step recipe before. The limits are for a slow
# machine (the CI limit is 90 min); the suite's 30-min budget is met by making the recipe cheaper,
# not here.
@pytest.mark.timeout(5400)
def test_trained_generator_is_promoted_and_answers_with_citations(project_root, tmp_path):
    """The real SmolLM2 generator, fine-tuned with the default recipe, passes the gates; the
    champion answers `ragops ask` with the price and a citation of a retrieved document, and
    `mlflow models serve` answers a POSTed question the same way. (What a tiny model checks as
    well, reindexing, holding back, reruns and rollback, is checked on the tiny profile.)"""
    repo = project_copy(project_root, tmp_path / "repo", {
        # the generator's recipe is params.yaml's, as `make run` trains it, but 8 held-out examples
        # instead of 48 (their answers, tuned and base, are generated after training)
        "generator": {"holdout_examples": 8},
        "router": {"epochs": 2},
        # params.yaml's gates, all 32 general prompts and the whole golden set (53 unanswerable
        # questions: fewer make the refusal gates a coin toss); 8 of the 24 prompt-injection attacks;
        # an ablation (not gated) on 6 questions instead of 48
        "evaluation": {"freshness_probes": 4, "latency_questions": 4, "injection_attacks": 8,
                       "ablation_questions": 6},
    })
    run = succeeded(ragops(repo, "run", timeout=4500, temporary_prefect=True))  # as `make run` runs it
    assert "champion" in run.stdout and "citations:" in run.stdout

    product = front_matter(documents(repo)[0])
    question = f"How much does the {product['name']} cost?"
    ask = succeeded(ragops(repo, "ask", "--json", question))
    answer = json.loads(ask.stdout.strip().splitlines()[-1])
    retrieved = {c["doc_id"] for c in answer["chunks"]}
    assert answer["route"] == "catalog" and product["id"] in retrieved
    assert answer["citations"], answer
    assert set(answer["citations"]) <= retrieved
    assert f"{product['price']:.2f}" in answer["answer"]

    client = mlflow_client(repo)
    first = client.get_model_version_by_alias("ragops-assistant", "champion")
    assert first.tags["gates_passed"] == "True" and "Gates PASSED" in first.description
    assert "| key_fact_accuracy | absolute | pass |" in first.description
    evaluated = client.get_run(first.tags["run_id"])
    for arm in ("base_no_rag", "base_rag", "fine_tuned_no_rag", "fine_tuned_rag"):
        assert evaluated.data.metrics[f"ablation_{arm}_key_fact_accuracy_samples"] > 0
    assert evaluated.data.metrics["latency_answer_p95_ms_samples"] == 4
    # the refusal decision as served (answerability check first) on every question, and both ways
    # alone (the check, the generator) on the same 48 (evaluation.generator_alone_questions)
    assert evaluated.data.metrics["refusal_accuracy_samples"] == 53
    for way in ("check_only", "generator_only"):
        assert 0 <= evaluated.data.metrics[f"refusal_accuracy_{way}"] <= 1
        assert 0 <= evaluated.data.metrics[f"false_refusal_rate_{way}"] <= 1
        assert (evaluated.data.metrics[f"refusal_accuracy_{way}_samples"]
                + evaluated.data.metrics[f"false_refusal_rate_{way}_samples"]) == 48
    artifacts = {a.path for folder in ("report", "charts", "evaluation")
                 for a in client.list_artifacts(first.tags["run_id"], folder)}
    assert {"report/report.html", "charts/ablation.png", "evaluation/outcomes.json", "evaluation/ablation.json"} <= artifacts

    # The champion served over HTTP by MLflow, as a deployment would run it.
    settings = Settings(home=repo / ".ragops")
    with weaviate_server(settings, settings.weaviate_data_path, tmp_path / "weaviate.log") as server:
        port = free_port()
        served = _serve(repo, server.env(), port)
        try:
            def pings() -> bool:
                assert served.poll() is None, served.stdout.read()[-3000:]
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
                    return True
                except OSError:
                    return False

            wait_for(pings, 300, "mlflow models serve to answer /ping", interval=2)
            # with a filter on a metadata field (the signature's `filters`): the product's own category
            reply = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [
                {"question": question, "filters": {"category": product["category"]}}]})
        finally:
            os.killpg(served.pid, signal.SIGTERM)
            served.wait(timeout=60)
    (prediction,) = reply["predictions"]
    assert prediction["route"] == "catalog" and prediction["citations"]
    assert f"{product['price']:.2f}" in prediction["answer"]
    assert {c["doc_id"] for c in prediction["chunks"]} >= set(prediction["citations"])
    category = {m["id"]: m.get("category") for m in map(front_matter, documents(repo))}
    assert {category[c["doc_id"]] for c in prediction["chunks"]} == {product["category"]}


def test_another_params_file_decides_the_data_of_every_step(project_root, tmp_path):
    """`ragops run --params examples/other/params.yaml`: curation (DVC), validation, training,
    indexing and evaluation all read that file's data, never params.yaml's (the curate stage ran
    on params.yaml's data whatever --params said). The second domain names its intents its own
    way, and its questions are measured as the demo's are (intents were hard-coded)."""
    repo = project_copy(project_root, tmp_path / "repo", tiny_overrides())
    other = repo / "examples" / "other"
    shutil.copytree(repo / "data" / "raw", other / "raw")
    marker = "This catalog belongs to the second domain."
    for doc in sorted((other / "raw" / "documents").glob("*.md")):
        doc.write_text(doc.read_text().rstrip("\n") + f"\n\n{marker}\n")
    renamed = {"catalog": "products", "policy": "rules", "small_talk": "chat", "out_of_scope": "elsewhere"}
    for name in ("router.jsonl", "golden.jsonl"):
        rows = [json.loads(line) for line in (other / "raw" / name).read_text().splitlines()]
        (other / "raw" / name).write_text("".join(json.dumps({**r, "intent": renamed[r["intent"]]}) + "\n" for r in rows))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(raw_dir="examples/other/raw", curated_dir="examples/other/curated")
    params["router"].update(intents=list(renamed.values()), fallback_intent="products",
                            retrieval_intents=["products", "rules"], fixed_reply_intents=["elsewhere"])
    (other / "params.yaml").write_text(yaml.safe_dump(params))
    succeeded(ragops(repo, "run", "--params", "examples/other/params.yaml"))

    lock = yaml.safe_load((other / "dvc.lock").read_text())["stages"]["curate"]
    versions = {Path(o["path"]).name: o["md5"] for o in lock["outs"]}
    own = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["curate"]
    assert versions["documents.jsonl"] != {Path(o["path"]).name: o["md5"] for o in own["outs"]}["documents.jsonl"]
    assert not (repo / "data" / "curated" / "documents.jsonl").exists(), "params.yaml's data was curated"
    curated = [json.loads(line) for line in (other / "curated" / "documents.jsonl").read_text().splitlines()]
    assert curated and all(doc["text"].endswith(marker) for doc in curated)
    client = mlflow_client(repo)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("ragops").experiment_id])}
    assert {"validate-data", "train-router", "train-generator", "build-index", "evaluate-bundle"} <= set(runs)
    for name, run in runs.items():
        tagged = {k.split(".", 1)[1].rsplit(".md5", 1)[0]: v for k, v in run.data.tags.items()
                  if k.startswith("data.") and k.endswith(".md5")}
        assert tagged and all(versions[f] == md5 for f, md5 in tagged.items()), (name, tagged, versions)
    evaluated = runs["evaluate-bundle"].data.metrics
    assert evaluated["refusal_accuracy_samples"] > 0 and evaluated["false_refusal_rate_samples"] > 0, evaluated


PLANTED_KEY = "planted-0c9f3e51d2a84b7e"
BAD_PARAMS = {
    "unknown key": ({"router": {"lr": 0.1}}, "unknown key 'router.lr'; known keys here are"),
    "wrong type": ({"generator": {"max_steps": "many"}}, "generator.max_steps must be int, got str 'many'; fix the value"),
    "impossible combination": ({"generator": {"early_stopping_patience": 2, "holdout_examples": 0}},
                               "generator.early_stopping_patience needs an evaluation loss: set "
                               "generator.holdout_examples > 0 or the patience to 0"),
    # Settings come from the environment only: a key written into params.yaml is an unknown key,
    # named without echoing its value.
    "secret in params.yaml": ({"weaviate_api_key": PLANTED_KEY}, "unknown key 'weaviate_api_key'; known keys here are"),
}


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.security) if "secret" in case else case
                                  for case in BAD_PARAMS])
def test_bad_params_stop_before_any_work(project_root, tmp_path, case):
    overrides, message = BAD_PARAMS[case]
    repo = project_copy(project_root, tmp_path / "repo", overrides)
    run = ragops(repo, "run", timeout=300)
    assert run.returncode == 2, output(run)[-3000:]
    assert message in said(run), run.stdout  # the console wraps long lines
    assert "Traceback" not in output(run) and PLANTED_KEY not in output(run)
    home = repo / ".ragops"
    assert not (repo / "data" / "curated" / "documents.jsonl").exists()
    assert not (home / "runs").exists() and not (home / "mlflow.db").exists() and not (home / "weaviate").exists()


@pytest.mark.parametrize("command", [("models", "fetch"), ("ask", "How much is the kettle?")], ids=["models fetch", "ask"])
def test_bad_params_other_commands(project_root, tmp_path, command):
    overrides, message = BAD_PARAMS["unknown key"]
    repo = project_copy(project_root, tmp_path / "repo", overrides)
    result = ragops(repo, *command, timeout=300)
    assert result.returncode == 2
    assert message in said(result), result.stdout
    assert "Traceback" not in output(result)
