"""Training is killed (SIGKILL to the whole `ragops run`, as an OOM killer or a lost node does)
after the generator saved a checkpoint: the next run resumes from that checkpoint instead of
starting over, finishes the job and registers the model with the step it resumed from. (The
tiny champion's project, retraining its generator for more steps.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.support.cli import RAGOPS, ragops, ragops_env, said, succeeded
from tests.support.project import update_params
from tests.support.registry import champion, mlflow_client

pytestmark = pytest.mark.reliability
STEPS = 40


@pytest.mark.timeout(1800)
def test_a_killed_training_resumes_from_its_checkpoint(champion_repo):
    repo = champion_repo
    update_params(repo, {"generator": {"max_steps": STEPS, "checkpoint_every": 4, "eval_every": 20}})
    # its own temporary Prefect server, which dies with it (a running server would keep the killed
    # run's concurrency slot until the lease expired)
    run = subprocess.Popen([RAGOPS, "run"], cwd=repo, env=ragops_env(repo, temporary_prefect=True),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    jobs = repo / ".ragops" / "checkpoints" / "generator"
    before = set(jobs.glob("*/step-*")) if jobs.is_dir() else set()  # the champion's finished job
    deadline = time.monotonic() + 900
    saved: set = set()
    while not saved and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before a checkpoint was saved: " + run.stdout.read().decode()[-3000:]
        saved = set(jobs.glob("*/step-*")) - before if jobs.is_dir() else set()
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL
    left = set(jobs.glob("*/step-*")) - before
    last = max(int(p.name.split("-")[1]) for p in left)
    assert 0 < last < STEPS, left

    rerun = succeeded(ragops(repo, "run"))
    assert f"generator: resuming from the checkpoint at step {last} of {STEPS}" in said(rerun), said(rerun)[-3000:]
    client = mlflow_client(repo)
    generator = max(client.search_model_versions("name = 'ragops-generator'"), key=lambda v: int(v.version))
    assert str(generator.version) == "2"
    assert client.get_run(generator.tags["run_id"]).data.metrics["resumed_from_step"] == last
    assert champion(client) == "2"
