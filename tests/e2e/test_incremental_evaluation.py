"""A reindex with the champion's models generates only what the document change touched, and its
evaluation gives the metrics a full evaluation of the same candidate gives: the same edit on the
same champion, reindexed twice, once reusing the champion's answers and once generating every one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import ragops, said, succeeded
from tests.support.project import read_jsonl, set_price, update_params
from tests.support.registry import mlflow_client

pytestmark = pytest.mark.e2e
TIMED = ("latency_", "answers_")  # timings (partly carried over when reusing); how many answers were reused


def _reindexed(tiny_champion, reuse: bool) -> tuple[dict, dict, str]:
    """The champion restored, a price edit of the document the first golden question asks about,
    `ragops reindex`: the candidate's logged metrics, its answers, and what the run said."""
    repo = tiny_champion.restore()
    update_params(repo, {"evaluation": {"reuse_answers": reuse}})
    asked = read_jsonl(repo / "data" / "raw" / "golden.jsonl")[0]
    set_price(repo / "data" / "raw" / "documents" / f"{asked['gold_doc_ids'][0]}.md", 1234.5)
    run = succeeded(ragops(repo, "reindex"))
    client = mlflow_client(repo)
    candidate = client.get_model_version("ragops-assistant", "2")
    run_id = candidate.tags["run_id"]
    local = client.download_artifacts(run_id, "evaluation/answers.json", str(repo / ".ragops"))
    answers = json.loads(Path(local).read_text())
    return client.get_run(run_id).data.metrics, {a["id"]: a["answer"] for a in answers}, said(run)


def test_a_reindex_evaluation_reuses_the_champions_answers_and_matches_a_full_one(tiny_champion):
    full, full_answers, _ = _reindexed(tiny_champion, reuse=False)
    incremental, incremental_answers, summary = _reindexed(tiny_champion, reuse=True)

    assert "answers reused from bundle v1's evaluation" in summary, summary
    assert full["answers_reused"] == 0 and full["answers_generated"] > incremental["answers_generated"] > 0
    assert incremental["answers_reused"] > 0, incremental
    # latency: generation times of unchanged single-request conversations carried from v1's evaluation
    assert full["latency_generation_times_reused"] == 0 < incremental["latency_generation_times_reused"]
    # every answer the full evaluation generated was reused or generated, once each
    assert incremental["answers_reused"] + incremental["answers_generated"] == full["answers_generated"]
    compared = {name for name in full if not name.startswith(TIMED)}
    assert compared == {name for name in incremental if not name.startswith(TIMED)}
    assert {n: incremental[n] for n in compared} == {n: full[n] for n in compared}
    assert incremental_answers == full_answers
