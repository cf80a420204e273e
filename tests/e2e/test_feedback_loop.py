"""The loop from a served answer back into the data, as a team runs it: `ragops serve` answers a
customer (who puts an e-mail address and a phone number in the question), the customer down-votes
it with a correction, a reviewer finds it in `ragops feedback review` and accepts it as a golden
question (after a harvest that failed validation changed no data), the `ragops-harvest`
deployment of `ragops deploy` turns it into a raw row (scrubbed, with provenance) and a new DVC
data version, and the retrain its event triggers evaluates a bundle on a golden set that holds the
new question. (The rows, scrubbing and checks one by one: tests/data/test_harvest.py; traces and
the review queue: tests/integration/test_traces.py.)"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from components.index.server import weaviate_server
from components.settings import Settings
from tests.support.cli import RAGOPS, output, ragops, ragops_env, said, succeeded
from tests.support.processes import free_port, start_daemon, stop_daemon, wait_for
from tests.support.project import documents, front_matter, read_jsonl, update_params
from tests.support.registry import (deployment_exists, deployment_runs, finished_flow_run, mlflow_client,
                                    prefect_request)

pytestmark = pytest.mark.e2e
HARVEST, RETRAIN = "ragops-harvest/harvest", "ragops-retrain/retrain"


def _triggered(api: str, since: str) -> dict | None:
    """The retrain run an event made after `since` (not one of the future runs its cron holds)."""
    return next((r for r in deployment_runs(api, RETRAIN) if not r.get("auto_scheduled") and r["created"] > since), None)


def _served_answers(port: int, questions: list[str]) -> list[dict]:
    """Each question answered by `ragops serve` and down-voted with a correction."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        def ready() -> bool:
            try:
                return http.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 300, "the champion to be served")
        bodies = []
        for question in questions:
            answer = http.post("/v1/answer", json={"question": question})
            assert answer.status_code == 200, answer.text
            bodies.append(answer.json())
            given = http.post("/v1/feedback", json={"trace_id": bodies[-1]["trace_id"], "rating": "down",
                                                    "correction": "The right price, please.", "comment": "wrong"})
            assert given.status_code == 200, given.text
    return bodies


def _a_failed_harvest_changes_no_data(repo, env: dict, trace_id: str, doc_id: str) -> None:
    """A training example whose right answer reads as a refusal passes the review but not validation
    (refusal_mismatch): the harvest stops, its rows are taken out, the data version stays, and the
    item is back in the review queue with why."""
    lock = (repo / "dvc.lock").read_text()
    succeeded(ragops(repo, "feedback", "decide", trace_id, "--reviewer", "ben", "--training", "--doc-id", doc_id,
                     "--answer", f"I'm not sure, the list says so [{doc_id}].", env=env, timeout=300))
    failed = ragops(repo, "feedback", "harvest", env=env, timeout=600)
    assert failed.returncode == 2 and "refusal_mismatch" in said(failed), output(failed)
    assert "the harvested rows were taken out again" in said(failed), output(failed)
    assert not (repo / "data" / "raw" / "harvested" / "generator.jsonl").exists()
    assert (repo / "dvc.lock").read_text() == lock
    queue = succeeded(ragops(repo, "feedback", "review", env=env, timeout=300))
    assert f"{trace_id}" in queue.stdout and "accepted, but not harvested: the harvest of its batch of 1 failed" in said(
        queue), output(queue)


@pytest.mark.timeout(1800)
def test_a_down_voted_answer_becomes_a_versioned_golden_question_that_the_triggered_retrain_evaluates(
        champion_repo, tmp_path, prefect_api):
    repo = champion_repo
    update_params(repo, {"feedback": {"retrain_after_items": 1}})
    doc = documents(repo)[0]
    product = front_matter(doc)
    question = f"I'm ana.lopez@example.com, call +1 415-555-0132: what does the {product['name']} cost right now?"
    right = f"The {product['name']} costs {product['price']:.2f} USD [{product['id']}]."
    settings = Settings(home=repo / ".ragops")
    with weaviate_server(settings, settings.weaviate_data_path, tmp_path / "weaviate.log") as weaviate:
        env = ragops_env(repo, {**weaviate.env(), "PREFECT_API_URL": prefect_api, "PREFECT_RUNNER_POLL_FREQUENCY": "2"})
        port = free_port()
        serve = start_daemon([RAGOPS, "serve", "--port", str(port)], repo, env, tmp_path / "serve.log")
        deploy = start_daemon([RAGOPS, "deploy"], repo, env, tmp_path / "deploy.log")
        try:
            body, other = _served_answers(port, [question, f"Is the {product['name']} still sold?"])
            _a_failed_harvest_changes_no_data(repo, env, other["trace_id"], product["id"])
            trace_id = body["trace_id"]
            queue = succeeded(ragops(repo, "feedback", "review", env=env, timeout=300))
            assert trace_id in queue.stdout and "down-voted, corrected" in queue.stdout, output(queue)
            assert " ".join(body["chunks"][0]["text"].split())[:60] in said(queue), output(queue)  # what it was given
            decided = succeeded(ragops(repo, "feedback", "decide", trace_id, "--reviewer", "ana", "--golden",
                                       "--doc-id", product["id"], "--answer", right, "--key-fact",
                                       f"{product['price']:.2f} USD", "--intent", "catalog", env=env, timeout=300))
            assert "accepted as golden" in decided.stdout, output(decided)

            wait_for(lambda: deployment_exists(prefect_api, HARVEST), 300, "the harvest deployment")
            found = prefect_request("GET", f"{prefect_api}/deployments/name/{HARVEST}").json()
            created = prefect_request("POST", f"{prefect_api}/deployments/{found['id']}/create_flow_run", json={})
            harvest_run = created.json()
            harvested = finished_flow_run(prefect_api, harvest_run["id"], 600, "the harvest run")
            assert harvested["name"] == "harvest (on-demand): 1 item(s), retrain requested", harvested["name"]
            triggered = wait_for(lambda: _triggered(prefect_api, harvest_run["created"]), 300,
                                 "the retrain the harvest triggered")
            retrained = finished_flow_run(prefect_api, triggered["id"], 900, "the retrain the harvest triggered")
            assert retrained["name"].startswith("retrain (feedback)"), retrained["name"]
        finally:
            stop_daemon(deploy, tmp_path / "deploy.log")
            stop_daemon(serve, tmp_path / "serve.log")

    # The raw row: scrubbed, with its provenance; curated and versioned with DVC, on the remote.
    row = read_jsonl(repo / "data" / "raw" / "harvested" / "golden.jsonl")[0]
    assert row["question"] == f"I'm <EMAIL_ADDRESS>, call <PHONE_NUMBER>: what does the {product['name']} cost right now?"
    assert (row["answer"], row["gold_doc_ids"], row["intent"]) == (right, [product["id"]], "catalog")
    assert row["provenance"] | {"reviewed_at": ""} == {"trace_id": trace_id, "bundle_version": "1", "reviewer": "ana",
                                                      "reviewed_at": ""}
    assert row["id"] in {r["id"] for r in read_jsonl(repo / "data" / "curated" / "golden.jsonl")}
    outs = {o["path"].rsplit("/", 1)[-1]: o["md5"]
            for o in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["curate"]["outs"]}
    md5 = outs["golden.jsonl"]
    assert (repo / ".ragops" / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    # Lineage both ways: the trace names the data version; the data names the trace.
    client = mlflow_client(repo)
    assert json.loads(client.get_trace(trace_id).info.tags["harvest.data_version"])["golden.jsonl"] == md5

    # The retrain evaluated a new bundle on the golden set with the harvested question in it.
    assert "bundle v2" in retrained["name"], retrained["name"]
    bundle = client.get_model_version("ragops-assistant", "2")
    outcomes = client.download_artifacts(bundle.tags["run_id"], "evaluation/outcomes.json", str(tmp_path))
    scored = json.loads(open(outcomes).read())
    assert row["id"] in scored["retrieval_recall_at_k"] and row["id"] in scored["key_fact_accuracy"], list(scored)
