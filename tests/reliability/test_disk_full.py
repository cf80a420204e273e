"""RAGOPS_HOME's disk fills up during a run: first while the generator saves a checkpoint, then,
in the run after it, while the new index version is written.

Everything happens in one private mount namespace (`unshare`, as in test_dvc_remote_faults.py)
where RAGOPS_HOME is a small tmpfs holding a copy of the tiny champion's home. A watcher in the
namespace fills it to the last block the moment the step starts writing (the generator's first
new checkpoint; the new index version's folder), so the failure is the kernel's own ENOSPC, where
it hurts. Each run must stop with a message naming the path and the fix; the checkpoints saved
before, the champion and the live index stay as they were. With the filler removed (space freed),
the next run resumes from the last checkpoint, and the last one completes and promotes. The
home is then copied back, so the registry is read as the runs left it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import RAGOPS, ragops_env
from tests.support.project import BIN, edit_first_product, update_params
from tests.support.registry import champion, ledger, mlflow_client

pytestmark = pytest.mark.reliability
STEPS = 40
LIVE = """
from components.config import load_params
from components.index.store import connect_weaviate, live_collection
from components.settings import Settings
alias = load_params("params.yaml").index.alias
with connect_weaviate(Settings()) as client:
    live = live_collection(client, alias)
    print(live, len(client.collections.get(live)), [s.status for s in client.collections.get(live).config.get_shards()])
"""


def _fill_when(ready: str, home: Path) -> str:
    """A watcher that fills `home`'s disk once the shell test `ready` holds."""
    return f"( until {ready}; do sleep 0.02; done; dd if=/dev/zero of={home}/.filler bs=64k 2>/dev/null ) & "


def _script(repo: Path, stage: Path, out: Path) -> str:
    home, jobs = repo / ".ragops", repo / ".ragops" / "checkpoints" / "generator"
    before = len(list(jobs.glob("*/step-*")))
    new_checkpoint = f'[ "$(ls -d {jobs}/*/step-* 2>/dev/null | wc -l)" -gt {before} ]'
    new_index = f"[ -d {home}/weaviate/catalog_v2 ]"
    listing = f"(cd {home} && find . -type f ! -name .filler -exec sha256sum {{}} + | sort -k2)"
    return " ".join([
        f"set -e; mount -t tmpfs -o size=128m tmpfs {stage}; cp -a {home}/. {stage}/; mount --bind {stage} {home};",
        "set +e;",
        _fill_when(new_checkpoint, home), f"{RAGOPS} run > {out}/checkpoint.log 2>&1; echo $? > {out}/checkpoint.rc;",
        f"wait; {listing} > {out}/checkpoint.files; rm -f {home}/.filler;",
        _fill_when(new_index, home), f"{RAGOPS} run > {out}/index.log 2>&1; echo $? > {out}/index.rc;",
        f"wait; {listing} > {out}/index.files; rm -f {home}/.filler;",
        f"{BIN / 'python'} -c '{LIVE}' > {out}/live.txt 2>&1;",
        f"{RAGOPS} run > {out}/rerun.log 2>&1; echo $? > {out}/rerun.rc;",
        f"umount {home} && rm -rf {home} && cp -a {stage}/. {home}/",
    ])


def _files(listing: Path) -> dict[str, str]:
    return {name.removeprefix("./"): digest for digest, name in (line.split(maxsplit=1) for line in
                                                                 listing.read_text().splitlines())}


def _said(out: Path, name: str) -> tuple[int, str]:
    return int((out / f"{name}.rc").read_text()), " ".join((out / f"{name}.log").read_text().split())


@pytest.mark.timeout(1800)
def test_a_full_disk_stops_the_run_naming_the_path_and_loses_nothing(champion_repo, tmp_path):
    repo = champion_repo
    update_params(repo, {"generator": {"max_steps": STEPS, "checkpoint_every": 4, "eval_every": 20}})
    edit_first_product(repo, "Warranty:", "Extended warranty:")  # the index changes too
    home, stage, out = repo / ".ragops", tmp_path / "stage", tmp_path / "out"
    stage.mkdir()
    out.mkdir()
    promoted = (home / "promotions.jsonl").read_bytes()
    done = subprocess.run(["unshare", "--mount", "--map-root-user", "--propagation", "private", "bash", "-c",
                           _script(repo, stage, out)], cwd=repo, env=ragops_env(repo), capture_output=True, text=True,
                          timeout=1700)
    assert done.returncode == 0, done.stdout + done.stderr  # the mounts and the copy back worked

    # 1. the disk fills while a checkpoint is written
    code, said = _said(out, "checkpoint")
    assert code == 2, said[-3000:]
    jobs = home / "checkpoints" / "generator"
    assert f"the disk of {jobs}/" in said and "saving the training checkpoint of step 8" in said, said[-3000:]
    assert "Free space on that disk" in said and "set RAGOPS_HOME to a folder on a bigger disk" in said
    assert "transient failure, retrying" not in said  # a full disk is not retried
    files = _files(out / "checkpoint.files")
    saved = sorted(k for k in files if k.startswith("checkpoints/generator/") and "/step-000004/" in k)
    assert len(saved) == 2, sorted(files)  # the checkpoint of step 4, whole (state and meta)
    assert not [k for k in files if "/.step-" in k], "a partial checkpoint was left behind"

    # 2. the next run resumes, then the disk fills while the new index version is written
    code, said = _said(out, "index")
    assert code == 2, said[-3000:]
    assert f"generator: resuming from the checkpoint at step 4 of {STEPS}" in said, said[-3000:]
    assert f"the disk of {home / 'weaviate'} is full" in said and "building a new index version" in said, said[-3000:]
    live, count, shards = (out / "live.txt").read_text().split(maxsplit=2)
    assert live == "Catalog_v1" and int(count) > 0 and shards.strip() == "['READY']", (out / "live.txt").read_text()
    assert _files(out / "index.files")["promotions.jsonl"] == _files(out / "checkpoint.files")["promotions.jsonl"]

    # 3. with the space back, the last run completes and promotes
    code, said = _said(out, "rerun")
    assert code == 0, said[-3000:]
    client = mlflow_client(repo)
    assert champion(client) == "2"
    assert [e["version"] for e in ledger(repo)] == ["1", "2"]
    assert (home / "promotions.jsonl").read_bytes().startswith(promoted)
    assert json.loads((home / "promotions.jsonl").read_text().splitlines()[-1])["collection"] == "Catalog_v2"
