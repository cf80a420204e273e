"""Server mode on one machine, and its Prefect server dying under a run.

The stack, as a production set-up has it: `prefect server` (concurrency leases on disk, as
docs/operations.md's server mode says), two workers on a process work pool, `mlflow server`, a
standalone Weaviate server, one PostgreSQL server holding the MLflow tracking store and registry and
Prefect's database, and an S3 store (SeaweedFS) holding MLflow's artifacts and DVC's remote; all
real and on loopback. `ragops deploy --work-pool` registers the deployments.

- The retrain deployment is run on demand. While its run holds a global concurrency slot
  (`ragops-training` in training, `ragops-index` from index build to promotion), the Prefect
  server's process group is SIGKILLed and started again on the same port and database. The
  interrupted run must end in a final state and free its slots (with Prefect's default in-memory
  lease storage the restart loses the run's lease and `ragops-index` stays taken for good, so every
  later run waits forever); the champion is never half moved (MLflow `champion`, the ledger and the
  Weaviate alias agree); a new trigger completes and trains what the interrupted run had not.
- Document edits reach the reindex deployment as events; the champion moves when the gates pass
  and stays when they fail (the served index does not move either).
- Two workers on the pool, one flow run at a time each (`ragops worker --limit 1`): a retrain and
  the second edit's reindex, submitted together, run one on each worker, and the `ragops-index`
  limit still keeps their index builds and promotions one at a time.
- The retrain deployment's cron (params.yaml `schedule.retrain_cron`) makes the server's scheduler
  create scheduled runs. Registering a schedule is not enough: with SQLAlchemy 2.1 the scheduler
  failed on every loop (`Can't evaluate bulk DML statement`) and the daily retrain never ran,
  while the deployment and its schedule looked fine.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest
from mlflow import MlflowClient

from components.config import load_params
from components.data.versioning import data_versions
from components.settings import Settings
from components.index.server import weaviate_server
from components.registry.promotion import champion_history, read_promotion_ledger
from flows.pipeline import INDEX_LOCK, TRAINING_LOCK
from tests.support.cli import RAGOPS, ragops_env
from tests.support.postgres import postgres_server
from tests.support.s3 import s3_store
from tests.support.processes import (free_port, start_daemon, start_mlflow_server, start_prefect_server, stop_daemon,
                                     wait_for)
from tests.support.project import BIN, edit_first_product, tiny_project, update_params
from tests.support.registry import (BUNDLE, FINAL_STATES, deployment_exists, deployment_runs, ledger, live_index,
                                    prefect_request)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
POOL = "ragops-test-pool"
WORKERS = ("ragops-worker-a", "ragops-worker-b")
RETRAIN, REINDEX, EVALUATE = "ragops-retrain/retrain", "ragops-reindex/on-document-change", "ragops-evaluate/on-demand"


def _held_slots(api: str) -> dict[str, int]:
    limits = prefect_request("POST", f"{api}/v2/concurrency_limits/filter", json={}).json()
    return {limit["name"]: limit["active_slots"] for limit in limits}


def _trigger(env: dict) -> None:
    started = subprocess.run([str(BIN / "prefect"), "deployment", "run", RETRAIN], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr


def _start_hostile_run(env: dict, hostile: Path) -> Path:
    """Whoever reaches the Prefect API runs the on-demand evaluation with project_path naming a DVC
    project of theirs, whose curate stage is a command of their choice. Returns the file that
    command would create."""
    planted = hostile / "pwned"
    hostile.mkdir()
    (hostile / "params.yaml").write_text("{}\n")
    (hostile / "dvc.yaml").write_text(f"stages:\n  curate:\n    cmd: touch {planted}\n    outs: [out]\n")
    subprocess.run([str(BIN / "python"), "-m", "dvc", "init", "--no-scm", "-q"], cwd=hostile, check=True, timeout=120)
    started = subprocess.run([str(BIN / "prefect"), "deployment", "run", EVALUATE, "-p", f"project_path={hostile}"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    return planted


def _triggered(api: str) -> list[dict]:
    """The retrain runs started by `prefect deployment run`, not the future ones its cron schedule
    has the scheduler create."""
    return [r for r in deployment_runs(api, RETRAIN) if not r.get("auto_scheduled")]


def _final_run(api: str, count: int) -> dict | None:
    """The `count`-th triggered run once it is final (whatever the final state)."""
    runs = _triggered(api)
    return runs[count - 1] if len(runs) >= count and runs[count - 1]["state_type"] in FINAL_STATES else None


def _finished_reindexes(api: str, count: int) -> list[dict]:
    """The reindex runs once `count` of them are final; a failed or crashed one fails the test."""
    final = [r for r in deployment_runs(api, REINDEX) if r["state_type"] in FINAL_STATES]
    bad = [(r["name"], r["state_type"], r["state"]["message"]) for r in final if r["state_type"] != "COMPLETED"]
    assert not bad, bad
    return final if len(final) >= count else []


def _champion_consistent(repo: Path, client: MlflowClient, weaviate: Settings) -> str | None:
    """MLflow `champion`, the ledger's current champion and the Weaviate alias name the same bundle."""
    history = champion_history(read_promotion_ledger(repo / ".ragops" / "promotions.jsonl"), BUNDLE)
    aliases = client.get_registered_model(BUNDLE).aliases if client.search_registered_models(
        f"name = '{BUNDLE}'") else {}
    champion = aliases.get("champion")
    assert (str(champion) if champion else None) == (str(history[-1]["version"]) if history else None), (
        aliases, history)
    served = live_index(weaviate)
    if champion is None:
        assert served is None, served
        return None
    assert served == client.get_model_version(BUNDLE, str(champion)).tags["collection"] == history[-1]["collection"]
    return str(champion)


def _versions(client: MlflowClient, name: str) -> int:
    return len(client.search_model_versions(f"name = '{name}'"))


def _assert_cron_makes_scheduled_runs(api: str, cron: str, timezone: str) -> None:
    retrain = prefect_request("GET", f"{api}/deployments/name/{RETRAIN}").json()
    (schedule,) = retrain["schedules"]
    assert schedule["active"] and (schedule["schedule"]["cron"], schedule["schedule"]["timezone"]) == (cron, timezone)
    # The scheduler picks up a just-registered deployment within seconds (its "recent deployments"
    # loop); the full loop runs every minute.
    runs = wait_for(lambda: [r for r in deployment_runs(api, RETRAIN) if r["state_type"] == "SCHEDULED"], 180,
                    f"a scheduled run of {RETRAIN} (the server's scheduler)", interval=2)
    assert len({r["expected_start_time"] for r in runs}) == len(runs)  # one run per cron occurrence
    for run in runs:
        assert run["auto_scheduled"] and run["created_by"]["type"] == "SCHEDULE"
        assert run["created_by"]["id"] == schedule["id"]
        assert run["parameters"]["trigger"] == "schedule"  # its run is named retrain-schedule
        assert datetime.fromisoformat(run["expected_start_time"]) > datetime.fromisoformat(run["created"])


def _worker_of(api: str, flow_run_id: str) -> str:
    """The worker that ran a flow run, from the run's own log ("Worker 'NAME' submitting flow run")."""
    logs = prefect_request("POST", f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}},
                                                               "limit": 200}).json()
    (name,) = {m.group(1) for log in logs if (m := re.search(r"Worker '([^']+)' submitting flow run", log["message"]))}
    return name


def _index_section(api: str, flow_run_id: str) -> tuple[datetime, datetime]:
    """From the start of a flow run's index build to the end of its last task (its promotion, or
    the build when nothing changed): the part the `ragops-index` limit holds."""
    tasks = prefect_request("POST", f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
    build = min(datetime.fromisoformat(t["start_time"]) for t in tasks if t["name"].startswith("build-index-version"))
    return build, max(datetime.fromisoformat(t["end_time"]) for t in tasks if t["end_time"])


def _submitted_together(api: str, env: dict, repo: Path, edit: tuple[str, str]) -> tuple[dict, dict]:
    """A document edit (its reindex) and a retrain, submitted together: they run one on each worker
    (each runs one flow run at a time), both complete, and their index sections do not overlap.
    Returns the two runs (retrain, reindex)."""
    triggered, reindexes = len(_triggered(api)), len(deployment_runs(api, REINDEX))
    edit_first_product(repo, *edit)
    _trigger(env)
    retrain = wait_for(lambda: _final_run(api, triggered + 1), 900, "the retrain submitted with a reindex", interval=3)
    reindex = wait_for(lambda: _finished_reindexes(api, reindexes + 1), 900, "the reindex submitted with a retrain",
                       interval=3)[-1]
    assert retrain["state_type"] == "COMPLETED", (retrain["state"]["message"], retrain["name"])
    assert {_worker_of(api, retrain["id"]), _worker_of(api, reindex["id"])} == set(WORKERS)
    first, second = sorted([_index_section(api, retrain["id"]), _index_section(api, reindex["id"])])
    print(f"index sections: {first[0]:%H:%M:%S}-{first[1]:%H:%M:%S}, then {second[0]:%H:%M:%S}-{second[1]:%H:%M:%S}; "
          f"{retrain['name']}; {reindex['name']}")
    assert first[1] <= second[0], f"index builds overlapped: {first} and {second}"
    return retrain, reindex


@pytest.fixture
def postgres(tmp_path):
    with postgres_server(tmp_path / "postgres.log", ["mlflow", "prefect"]) as server:
        yield server


@pytest.fixture
def s3(tmp_path):
    with s3_store(tmp_path / "s3", tmp_path / "s3.log") as store:
        yield store


@pytest.fixture
def mlflow_on_postgres(tmp_path, postgres, s3):
    """`mlflow server` with its tracking store and registry in PostgreSQL, its artifacts in S3; its URI."""
    server, uri = start_mlflow_server(tmp_path / "mlflow", tmp_path / "mlflow-server.log", env=s3.env(),
                                      backend_uri=postgres.url("mlflow", "psycopg2"), artifacts=s3.url("mlflow"))
    yield uri
    server.stop()


def _rows(url: str, query: str) -> list[tuple]:
    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def _assert_state_is_in_postgres_and_s3(postgres, s3, repo: Path, api: str) -> None:
    """What the servers answered is what PostgreSQL holds: the registry's bundle versions with their
    aliases, and every flow run of the retrain deployment; the S3 store holds the models' artifacts
    and every curated file of the last run at its DVC md5."""
    versions = _rows(postgres.url("mlflow"), f"SELECT count(*) FROM model_versions WHERE name = '{BUNDLE}'")[0][0]
    aliases = dict(_rows(postgres.url("mlflow"), f"SELECT alias, version FROM registered_model_aliases WHERE name = '{BUNDLE}'"))
    assert versions >= 3 and {"champion", "challenger"} <= aliases.keys(), (versions, aliases)
    runs = {str(r[0]) for r in _rows(postgres.url("prefect"), "SELECT id FROM flow_run")}
    assert {r["id"] for r in deployment_runs(api, RETRAIN)} <= runs
    assert any(key.endswith("/MLmodel") for key in s3.keys("mlflow/")), "no model artifacts in S3"
    assert not (repo.parent / "mlflow" / "artifacts").exists()
    pushed = set(s3.keys("dvc/files/md5/"))
    for md5 in data_versions(repo).values():
        assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in pushed, (md5, sorted(pushed)[:10])


@pytest.mark.heavy
@pytest.mark.timeout(2400)
def test_deployments_on_a_work_pool_survive_a_prefect_restart_and_promote_only_through_gates(
        project_root, tmp_path, postgres, s3, mlflow_on_postgres):
    # 40 generator steps: the retrain run holds the training slot long enough to be caught holding it
    repo = tiny_project(project_root, tmp_path / "repo", generator={"max_steps": 40, "eval_every": 20},
                        index={"debounce_seconds": 3, "watch_poll_seconds": 0.5})
    params = load_params(repo / "params.yaml")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    prefect_home = tmp_path / "prefect-server"
    database = postgres.url("prefect", "asyncpg")
    prefect = start_prefect_server(prefect_home, port, tmp_path / "prefect-server-1.log", database)
    client = MlflowClient(mlflow_on_postgres)
    with weaviate_server(Settings(), tmp_path / "weaviate", tmp_path / "weaviate.log") as weaviate:
        weaviate_settings = Settings(**weaviate.connection())
        env = ragops_env(repo, {**weaviate.env(), **s3.env(), "RAGOPS_DVC_REMOTE_URL": s3.url("dvc"),
                                "PREFECT_API_URL": api, "RAGOPS_MLFLOW_TRACKING_URI": mlflow_on_postgres,
                                "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"})
        env.pop("PREFECT_HOME", None)  # the worker and `ragops deploy` keep their own client state
        workers = {name: start_daemon([RAGOPS, "worker", "--pool", POOL, "--name", name, "--limit", "1"], repo, env,
                                      tmp_path / f"{name}.log") for name in WORKERS}
        deploy = None
        try:
            wait_for(lambda: prefect_request("GET", f"{api}/work_pools/{POOL}").status_code == 200, 300,
                     "a worker to create its process work pool")
            deploy = start_daemon([RAGOPS, "deploy", "--work-pool", POOL], repo, env, tmp_path / "deploy.log")
            for name in (RETRAIN, REINDEX, EVALUATE):
                wait_for(lambda name=name: deployment_exists(api, name), 300, f"deployment {name}")
            retrain = prefect_request("GET", f"{api}/deployments/name/{RETRAIN}").json()
            assert retrain["work_pool_name"] == POOL and retrain["entrypoint"] == "flows.pipeline.retrain"

            # A run whose project_path is not the worker's project fails before any command of it runs.
            planted = _start_hostile_run(env, tmp_path / "hostile")
            (hostile,) = wait_for(lambda: [r for r in deployment_runs(api, EVALUATE) if r["state_type"] in FINAL_STATES],
                                  600, "the hostile run to end", interval=2)
            assert hostile["state_type"] == "FAILED", hostile["state"]
            assert "is not the project this worker serves" in hostile["state"]["message"], hostile["state"]["message"]
            assert not planted.exists(), "a flow parameter made the worker run a command of the caller's choice"

            # The retrain deployment, run on demand by the worker, interrupted by a dying Prefect server.
            _trigger(env)
            wait_for(lambda: any(_held_slots(api).get(name) for name in (TRAINING_LOCK, INDEX_LOCK)), 900,
                     f"the run to hold the {TRAINING_LOCK} or {INDEX_LOCK} slot", interval=0.5)
            (interrupted,) = _triggered(api)
            assert interrupted["state_type"] == "RUNNING", interrupted["state"]
            prefect.kill()
            prefect = start_prefect_server(prefect_home, port, tmp_path / "prefect-server-2.log", database)

            ended = wait_for(lambda: _final_run(api, 1), 900, "the interrupted run to end", interval=3)
            print(f"interrupted run: {ended['state_type']} ({ended['state']['name']}): {ended['state']['message']}")
            wait_for(lambda: not any(_held_slots(api).get(name) for name in (INDEX_LOCK, TRAINING_LOCK)), 60,
                     f"the ended run's {INDEX_LOCK} and {TRAINING_LOCK} slots to be free (a server that lost "
                     "the run's lease never frees them)")
            _champion_consistent(repo, client, weaviate_settings)

            _trigger(env)
            recovered = wait_for(lambda: _final_run(api, 2), 900, "the run triggered after the restart", interval=3)
            assert recovered["state_type"] == "COMPLETED", (recovered["state"]["message"], recovered["name"])
            champion = _champion_consistent(repo, client, weaviate_settings)
            assert champion is not None
            # Between them, the two runs trained each model once (the second reused what the first
            # registered) and one of them made the bundle the champion.
            assert {name: _versions(client, name) for name in ("ragops-router", "ragops-generator")} == {
                "ragops-router": 1, "ragops-generator": 1}
            names = [r["name"] for r in _triggered(api) if r["state_type"] == "COMPLETED"]
            assert all(name.startswith("retrain (on-demand): router v1 ") for name in names), names
            assert [name.endswith(f"bundle v{champion} → champion") for name in names].count(True) == 1, names

            # A document edit → event → reindex on the worker → gates pass → the champion moves.
            promoted = str(_versions(client, BUNDLE) + 1)
            edit_first_product(repo, "Warranty:", "Extended warranty:")
            (first,) = wait_for(lambda: _finished_reindexes(api, 1), 900, "the first reindex run", interval=3)
            assert first["name"].endswith(f"bundle v{promoted} → champion"), first["name"]
            assert _champion_consistent(repo, client, weaviate_settings) == promoted

            # Gates the candidate cannot pass: the next edit, and a retrain submitted with it (one on
            # each worker, their index sections one after the other), are evaluated but held back.
            update_params(repo, {"evaluation": {"gates": {"retrieval_recall_at_k": 0.5, "key_fact_accuracy": 0.95}}})
            live, decided = live_index(weaviate_settings), len(ledger(repo))
            runs = _submitted_together(api, env, repo, ("Extended warranty:", "Lifetime warranty:"))
            held = client.get_model_version_by_alias(BUNDLE, "challenger")
            assert any(r["name"].endswith(f"bundle v{held.version} → challenger") for r in runs), [r["name"] for r in runs]
            assert int(held.version) > int(promoted) and held.tags["gates_passed"] == "False"
            assert "key_fact_accuracy" in held.tags["gate_reasons"]
            assert live_index(weaviate_settings) == live  # the served index did not move either
            assert _champion_consistent(repo, client, weaviate_settings) == promoted
            assert {e["action"] for e in ledger(repo)[decided:]} == {"hold"}

            _assert_cron_makes_scheduled_runs(api, params.schedule.retrain_cron, params.schedule.timezone)
            _assert_state_is_in_postgres_and_s3(postgres, s3, repo, api)
        finally:
            if deploy is not None:
                stop_daemon(deploy, tmp_path / "deploy.log")
            for name, worker in workers.items():
                stop_daemon(worker, tmp_path / f"{name}.log")
            prefect.stop()
