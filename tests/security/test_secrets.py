"""Secrets come only from the environment and leave no trace: a whole `ragops run` with planted
secrets, then a byte grep of everything the run and its services wrote.

Planted, each a fresh random value per test run, in the environment of `ragops run` only:
- RAGOPS_WEAVIATE_API_KEY, used for real: the standalone Weaviate server accepts this one API key
  and refuses anonymous requests.
- MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, used for real: `mlflow server --app-name
  basic-auth` (the `mlflow[auth]` extra) whose admin user is created with them at its first start
  (from its environment, no password in its config file) and which refuses anonymous requests.
  The run gets them inside its tracking URI (`http://user:password@host:port`), which MLflow itself
  would print and store; their HTTP Basic form (base64 of "user:password", what an Authorization
  header carries) is grepped for too.
- AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, used for real: the DVC remote is a bucket of an S3
  store (SeaweedFS, tests/support/s3.py) whose one identity has these keys; the run pushes the
  curated data there.

Grepped as bytes (SQLite databases, WAL files, model weights and caches included) for every
planted value: the whole project copy (.git, .dvc/ and its cache, dvc.lock, data/curated, and
RAGOPS_HOME=.ragops with the DVC remote, run folders, ledgers, checkpoints, logs), the MLflow
server's backend store and artifact folder, the run's own PREFECT_HOME (its SQLite database
holds flow and task runs, parameters and logs), the run's TMPDIR and DVC site cache, the
Weaviate server's data folder and log, the S3 store's data folder and log, and the run's captured
stdout and stderr: every file under the test's folder but the servers' own credential stores
(MLflow's user store, the S3 store's identity file). Every process's command line (what `ps` shows any local user) is
sampled while the run goes. The MLflow username is an identity, not a secret: MLflow records it as
the owner of each run and logged model (run user_id, `mlflow.user` tag), and the server's user
store and log name the account; there, and only there, it may appear (the password never).
Params, tags and descriptions of every experiment, run, logged model, registered model and
version are also read back through the MLflow API.

(A secret written into params.yaml is refused before any work, as an unknown key named without
its value: tests/e2e/test_cli.py, test_bad_params_stop_before_any_work.)
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from components.index.server import WeaviateServer, weaviate_server
from components.data.versioning import data_versions
from components.index.store import connect_weaviate
from components.settings import Settings
from tests.support.cli import RAGOPS, ragops_env
from tests.support.processes import command_lines_watched, start_mlflow_server
from tests.support.project import tiny_project
from tests.support.s3 import s3_store

pytestmark = pytest.mark.security

SECRET_VARIABLES = ("RAGOPS_WEAVIATE_API_KEY", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
BUNDLE = "ragops-assistant"
OWNER_TAG = "mlflow.user"  # where MLflow records who logged a run or model


def _planted() -> dict[str, str]:
    """A unique value per secret; the uuid makes any occurrence of it a leak, never a coincidence."""
    return {name: f"planted{uuid.uuid4().hex}" for name in SECRET_VARIABLES}


def _needles(planted: dict[str, str]) -> dict[str, bytes]:
    basic = f"{planted['MLFLOW_TRACKING_USERNAME']}:{planted['MLFLOW_TRACKING_PASSWORD']}".encode()
    return {**{name: value.encode() for name, value in planted.items()},
            "MLflow Authorization: Basic header": base64.b64encode(basic)}


@contextlib.contextmanager
def _weaviate_with_api_key(tmp_path: Path, api_key: str) -> Iterator[WeaviateServer]:
    """The standalone server of components.index.server, with the planted API key and anonymous
    access off (checked below: an anonymous request must be refused)."""
    with weaviate_server(Settings(), tmp_path / "weaviate", tmp_path / "weaviate.log", api_key=api_key) as server:
        assert httpx.get(f"{server.url}/v1/schema", timeout=10).status_code == 401
        assert httpx.get(f"{server.url}/v1/schema", headers={"Authorization": f"Bearer {api_key}"},
                         timeout=10).status_code == 200
        yield server


@contextlib.contextmanager
def _mlflow_with_basic_auth(tmp_path: Path, username: str, password: str) -> Iterator[str]:
    """tests/support's `mlflow server`, as the basic-auth app. Its user store and log live in
    mlflow-auth/, apart from the tracking store and artifacts in mlflow-server/."""
    auth = tmp_path / "mlflow-auth"
    auth.mkdir()
    config = auth / "basic_auth.ini"
    config.write_text(f"[mlflow]\ndefault_permission = NO_PERMISSIONS\ndatabase_uri = sqlite:///{auth / 'users.db'}\n"
                      f"authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    server, uri = start_mlflow_server(tmp_path / "mlflow-server", auth / "server.log", app="basic-auth", env={
        "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_USERNAME": username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex})
    try:
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search, timeout=30).status_code == 401
        assert httpx.get(search, auth=(username, password), timeout=30).status_code == 200
        yield uri
    finally:
        server.stop()


def _files(root: Path) -> list[Path]:
    """Regular files under root (or root itself), symlinks not followed: what they point to inside
    the grepped folders is grepped there."""
    if root.is_file():
        return [root]
    found = []
    for folder, _, names in os.walk(root):
        found += [p for p in (Path(folder) / n for n in names) if p.is_file() and not p.is_symlink()]
    return sorted(found)


def _grep(roots: list[Path], needles: dict[str, bytes]) -> tuple[list[str], int, int]:
    """Every occurrence of every needle in the files under roots: (hits as 'file @ offset', files, bytes)."""
    hits, files, size = [], 0, 0
    for root in roots:
        assert root.exists(), f"{root} was not written: the run did not use it"
        for path in _files(root):
            data = path.read_bytes()
            files, size = files + 1, size + len(data)
            for name, needle in needles.items():
                offset = data.find(needle)
                while offset >= 0:
                    context = data[max(0, offset - 60):offset + len(needle) + 60]
                    hits.append(f"{path} @ byte {offset}: {name}: {context!r}")
                    offset = data.find(needle, offset + 1)
    return hits, files, size


def _registry_records(client: MlflowClient, owner: str) -> dict[str, str]:
    """What the tracking API returns for every experiment, run, logged model, registered model and
    version, as text to search. The owner MLflow records (a run's user_id and `mlflow.user` tag, a
    logged model's `mlflow.user` tag) is checked to be the planted user, then left out."""
    records = {}
    experiments = client.search_experiments(view_type=ViewType.ALL)
    for experiment in experiments:
        records[f"experiment {experiment.name}"] = json.dumps(experiment.tags)
        for run in client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000):
            record = run.to_dictionary()
            assert record["info"].pop("user_id") == record["data"]["tags"].pop(OWNER_TAG) == owner
            records[f"run {run.info.run_name} ({run.info.run_id})"] = json.dumps(record, default=str)
    for model in client.search_logged_models([e.experiment_id for e in experiments], max_results=1000):
        tags = dict(model.tags)
        assert tags.pop(OWNER_TAG) == owner
        records[f"logged model {model.name} ({model.model_id})"] = json.dumps(
            {"params": model.params, "tags": tags, "uri": model.artifact_location})
    for registered in client.search_registered_models(max_results=1000):
        records[f"registered model {registered.name}"] = json.dumps(
            {"tags": registered.tags, "description": registered.description, "aliases": registered.aliases})
        for version in client.search_model_versions(f"name = '{registered.name}'", max_results=1000):
            records[f"model version {registered.name} v{version.version}"] = json.dumps(
                {"tags": version.tags, "description": version.description, "source": version.source,
                 "run_id": version.run_id, "user_id": version.user_id})
    assert any(k.startswith("run ") for k in records) and any(k.startswith("model version ") for k in records)
    return records


@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_planted_secrets_are_used_and_never_written(project_root, tmp_path, monkeypatch):
    planted, run_tmp, tic = _planted(), tmp_path / "run-tmp", time.monotonic()
    user = planted["MLFLOW_TRACKING_USERNAME"]
    repo = tiny_project(project_root, tmp_path / "repo")
    run_tmp.mkdir()
    with _weaviate_with_api_key(tmp_path, planted["RAGOPS_WEAVIATE_API_KEY"]) as weaviate, \
            _mlflow_with_basic_auth(tmp_path, user, planted["MLFLOW_TRACKING_PASSWORD"]) as tracking_uri, \
            s3_store(tmp_path / "s3", tmp_path / "s3.log", planted["AWS_ACCESS_KEY_ID"],
                     planted["AWS_SECRET_ACCESS_KEY"]) as s3:
        print(f"servers up after {time.monotonic() - tic:.0f} s")
        # the run starts its own temporary Prefect server in PREFECT_HOME
        # MLflow's credentials reach the run in the tracking URI (user:password@), not as variables.
        with_credentials = tracking_uri.replace("http://", f"http://{user}:{planted['MLFLOW_TRACKING_PASSWORD']}@", 1)
        in_environment = {k: v for k, v in planted.items() if not k.startswith("MLFLOW_TRACKING_")}
        env = ragops_env(repo, {**weaviate.env(), **in_environment, "RAGOPS_MLFLOW_TRACKING_URI": with_credentials,
                                "RAGOPS_DVC_REMOTE_URL": s3.url("dvc"), "AWS_ENDPOINT_URL": s3.endpoint,
                                "PREFECT_HOME": str(tmp_path / "prefect-home"), "TMPDIR": str(run_tmp),
                                "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache")}, temporary_prefect=True)
        without_user = {k: v for k, v in _needles(planted).items() if k != "MLFLOW_TRACKING_USERNAME"}
        with command_lines_watched(without_user) as on_command_lines:
            run = subprocess.run([RAGOPS, "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert not on_command_lines, "planted secrets on command lines (`ps`):\n" + "\n".join(on_command_lines[:5])
        print(f"ragops run done after {time.monotonic() - tic:.0f} s")

        # The run went through both authenticated services: a champion is registered, owned by the
        # planted user, and its index collection is on the key-protected server.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", planted["MLFLOW_TRACKING_PASSWORD"])
        client = MlflowClient(tracking_uri)
        champion = client.get_model_version_by_alias(BUNDLE, "champion")
        with connect_weaviate(Settings(**weaviate.connection())) as wv:
            assert wv.collections.exists(champion.tags["collection"])
        records = _registry_records(client, user)
        pushed = set(s3.keys("dvc/files/md5/"))  # the run pushed its data with the planted S3 keys
        assert {f"dvc/files/md5/{md5[:2]}/{md5[2:]}" for md5 in data_versions(repo).values()} <= pushed

    needles = _needles(planted)
    in_api = [f"{what}: {name}" for what, text in records.items() for name, needle in needles.items()
              if needle.decode() in text]
    assert not in_api, "planted secrets in MLflow params/tags/descriptions:\n" + "\n".join(in_api)
    in_output = [f"{stream}: {name}" for stream, text in (("stdout", run.stdout), ("stderr", run.stderr))
                 for name, needle in needles.items() if needle.decode() in text]
    assert not in_output, "planted secrets in the run's output:\n" + "\n".join(in_output)

    # Everything the run and the servers wrote; the servers are stopped, so their stores are flushed.
    # The Weaviate data folder is grepped too: a static API key must not be persisted by the server.
    store = tmp_path / "mlflow-server"
    roots = [repo, store / "artifacts", tmp_path / "prefect-home", run_tmp, tmp_path / "dvc-site-cache",
             tmp_path / "weaviate", tmp_path / "weaviate.log", tmp_path / "s3" / "data", tmp_path / "s3.log"]
    hits, files, size = _grep(roots, needles)
    # The username is an identity, not a secret: MLflow's store records it as the owner of each run
    # and logged model (checked through the API above, the only place it may appear there), and the
    # server's user store and log name the account. The password and the other values must be absent.
    databases = sorted(store.glob("mlflow.db*"))
    assert _grep(databases, {"owner": user.encode()})[0], "the byte grep does not see into the SQLite store"
    without_user = {k: v for k, v in needles.items() if k != "MLFLOW_TRACKING_USERNAME"}
    server_hits, server_files, server_size = _grep([*databases, tmp_path / "mlflow-auth"], without_user)
    identity = 1  # tmp_path/s3/identities.json, the S3 store's credential store: it holds the keys by design
    assert files + server_files + identity == len(_files(tmp_path)), "a file under tmp_path was left out of the grep"
    print(f"grepped {files + server_files} files, {(size + server_size) / 2**20:.1f} MiB, for {len(needles)} planted "
          f"values, after {time.monotonic() - tic:.0f} s")
    assert not hits + server_hits, "planted secrets found:\n" + "\n".join(hits + server_hits)
