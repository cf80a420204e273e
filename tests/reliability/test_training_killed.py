"""Training is killed (SIGKILL to the whole `ragops run`, as an OOM killer or a lost node does)
after the generator saved a checkpoint: the next run resumes from that checkpoint instead of
starting over, finishes the job and registers the model with the step it resumed from."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import BIN
from tests.reliability.conftest import champion, output, ragops, tiny_project

pytestmark = pytest.mark.reliability
STEPS = 40


@pytest.mark.timeout(1800)
def test_a_killed_training_resumes_from_its_checkpoint(project_root, tmp_path):
    repo = tiny_project(project_root, tmp_path, generator={"max_steps": STEPS, "checkpoint_every": 4,
                                                           "eval_every": 20})
    env = {**os.environ, "RAGOPS_HOME": str(repo / ".ragops"), "COLUMNS": "200"}
    env.pop("PREFECT_API_URL", None)
    run = subprocess.Popen([str(BIN / "ragops"), "run"], cwd=repo, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, start_new_session=True)
    jobs = repo / ".ragops" / "checkpoints" / "generator"
    deadline = time.monotonic() + 900
    saved: list = []
    while not saved and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before a checkpoint was saved: " + run.stdout.read().decode()[-3000:]
        saved = sorted(jobs.glob("*/step-*")) if jobs.is_dir() else []
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL
    left = sorted(jobs.glob("*/step-*"))
    last = max(int(p.name.split("-")[1]) for p in left)
    assert 0 < last < STEPS, left

    rerun = ragops(repo, "run")
    assert rerun.returncode == 0, output(rerun)[-4000:]
    said = " ".join(output(rerun).split())  # Prefect logs the flow's prints to stderr, wrapped
    assert f"generator: resuming from the checkpoint at step {last} of {STEPS}" in said, said[-3000:]
    client = MlflowClient(f"sqlite:///{repo / '.ragops' / 'mlflow.db'}")
    (generator,) = client.search_model_versions("name = 'ragops-generator'")
    metrics = client.get_run(generator.tags["run_id"]).data.metrics
    assert metrics["resumed_from_step"] == last
    assert champion(client) == "1"
