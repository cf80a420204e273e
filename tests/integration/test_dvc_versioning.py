"""Real DVC in a temporary git repository: repro, skip when unchanged, push, md5 data versions."""

import hashlib
import json
import os
import re
import stat
import subprocess
import uuid

import pytest
import yaml

from components.data.validation import DataValidationError
from components.data.versioning import VersioningError, data_versions, reproduce_and_push, stage_file
from components.stages import curate_stage, make_context, validate_stage
from tests.support.processes import command_lines_watched, free_port
from tests.support.project import BIN, copy_project

pytestmark = pytest.mark.integration


def test_repro_push_and_versions(project_root, tmp_path):
    repo = copy_project(project_root, tmp_path / "repo")
    remote = tmp_path / "remote"

    versions, ran = reproduce_and_push(repo, str(remote))
    assert ran
    assert set(versions) == {"documents.jsonl", "router.jsonl", "generator.jsonl", "golden.jsonl",
                             "general_prompts.jsonl", "redteam.jsonl", "quarantine.jsonl"}  # what the scan held back
    for name, md5 in versions.items():
        assert hashlib.md5((repo / "data" / "curated" / name).read_bytes()).hexdigest() == md5
        assert (remote / "files" / "md5" / md5[:2] / md5[2:]).exists(), f"{name} not pushed to the remote"
    # A fresh clone's first curation leaves its git tree as committed: dvc.lock is current and every
    # curated output is ignored (a stale lock, rewritten by the first `make run`, left clones dirty).
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert dirty == "", f"curation changed tracked files; commit what `dvc repro curate` writes:\n{dirty}"

    again, ran_again = reproduce_and_push(repo, str(remote))
    assert again == versions and not ran_again

    doc = repo / "data" / "raw" / "documents" / "p-001.md"
    doc.write_text(doc.read_text().replace("Price:", "Now only, price:"))
    changed, ran_changed = reproduce_and_push(repo, str(remote))
    assert ran_changed
    assert changed["documents.jsonl"] != versions["documents.jsonl"]
    assert changed["router.jsonl"] == versions["router.jsonl"]


def test_curation_error_surfaces_with_file_and_fix(project_root, tmp_path):
    repo = copy_project(project_root, tmp_path / "repo")
    (repo / "data" / "raw" / "documents" / "broken.md").write_text("no front matter here at all")
    with pytest.raises(VersioningError, match=r"broken.md: no YAML front matter"):
        reproduce_and_push(repo, str(tmp_path / "remote"))


def test_a_remote_url_with_credentials_stays_off_command_lines_errors_and_readable_files(
        project_root, tmp_path, monkeypatch):
    """RAGOPS_DVC_REMOTE_URL with a password, on a remote that refuses connections (a closed port):
    the push fails, and the password is on no process's command line while ragops runs DVC, in no
    error message, and in a config file readable only by this user."""
    password = f"planted{uuid.uuid4().hex}"
    url = f"https://ragops:{password}@127.0.0.1:{free_port()}/dvc"
    monkeypatch.setenv("RAGOPS_DVC_REMOTE_URL", url)
    repo = copy_project(project_root, tmp_path / "repo")
    with command_lines_watched({"password": password.encode()}) as seen, pytest.raises(VersioningError) as failed:
        reproduce_and_push(repo, url)
    assert "did not take the curated data" in str(failed.value)
    assert password not in str(failed.value) and "ragops:***@127.0.0.1" in str(failed.value)
    assert not seen, f"the remote's password was on a command line: {seen[:1]}"
    local = repo / ".dvc" / "config.local"
    assert stat.S_IMODE(local.stat().st_mode) == 0o600 and password in local.read_text()


def test_versions_need_a_lock_file(tmp_path):
    with pytest.raises(VersioningError, match="dvc.lock missing"):
        data_versions(tmp_path)


def test_a_params_file_elsewhere_gets_its_own_stage_or_an_error_saying_where_it_goes(project_root, tmp_path):
    """The stage file written beside another params file reads that file (its name through `vars`);
    a params file beside params.yaml, or one sharing params.yaml's curated folder, is refused."""
    repo = copy_project(project_root, tmp_path / "repo")
    (repo / "examples" / "faq").mkdir(parents=True)
    written = stage_file(repo, repo / "examples" / "faq" / "faq.yaml", "examples/faq/curated")
    stage = yaml.safe_load(written.read_text())
    assert written == repo / "examples" / "faq" / "dvc.yaml" and stage["vars"] == ["faq.yaml"]
    assert stage["stages"]["curate"]["wdir"] == "../.."
    assert "--params examples/faq/faq.yaml" in stage["stages"]["curate"]["cmd"]
    assert stage_file(repo, repo / "params.yaml", "data/curated") == repo / "dvc.yaml"
    with pytest.raises(VersioningError, match="needs a folder of its own"):
        stage_file(repo, repo / "other.yaml", "other/curated")
    with pytest.raises(VersioningError, match="is params.yaml's too"):
        stage_file(repo, repo / "examples" / "faq" / "faq.yaml", "data/curated")


def test_a_failed_validation_restores_the_data_that_last_passed(project_root, tmp_path, settings):
    """The restore hint of a failed validation puts back the data versions that last passed (a copy
    of their dvc.lock), not the committed dvc.lock, which may be older."""
    repo = copy_project(project_root, tmp_path / "repo")
    ctx = make_context(repo, repo / "params.yaml", settings)
    good = curate_stage(ctx)
    validate_stage(ctx, good)
    router = repo / "data" / "raw" / "router.jsonl"
    rows = [json.loads(line) for line in router.read_text().splitlines()]
    router.write_text("".join(json.dumps({**r, "intent": "sales"} if i == 0 else r) + "\n" for i, r in enumerate(rows)))
    with pytest.raises(DataValidationError) as err:
        validate_stage(ctx, curate_stage(ctx))
    command = re.search(r"restore it with `([^`]+)`", str(err.value)).group(1)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(command, shell=True, cwd=repo, env=env, check=True, capture_output=True)
    assert data_versions(repo) == good.versions
    for name, md5 in good.versions.items():
        assert hashlib.md5((repo / "data" / "curated" / name).read_bytes()).hexdigest() == md5
