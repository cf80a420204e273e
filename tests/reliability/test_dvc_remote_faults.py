"""The DVC remote (the tiny champion project's local remote) cannot take the new data version:
first it is read-only, then its disk is full.

Each faulty run happens in a private mount namespace (`unshare`), where the remote folder is a
read-only bind mount or a small tmpfs filled to the last block, so the faults are the kernel's
own (EROFS, ENOSPC) and vanish with the run. Each run must stop at the curate step with a
message that names the remote and the fix; the versions already on the remote, the champion and
the registry stay as they were, and the workspace stays consistent (`dvc status curate` clean). With
the remote writable again, the rerun pushes and completes.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from tests.support.cli import ragops, ragops_env, succeeded
from tests.support.project import BIN, edit_first_product
from tests.support.registry import champion, ledger, mlflow_client, version_counts

pytestmark = pytest.mark.reliability

FAULTS = {
    "read-only": "mount --bind {remote} {remote} && mount -o remount,bind,ro {remote}",
    # a tmpfs holding a copy of the remote, filled up, mounted over it
    "disk full": ("mount -t tmpfs -o size=4m tmpfs {stage} && cp -a {remote}/. {stage}/ && "
                  "(dd if=/dev/zero of={stage}/.filler bs=4k 2>/dev/null || true) && mount --bind {stage} {remote}"),
}


def _files(folder: Path, skip: str = ".filler") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != skip}


def _run_with_fault(repo: Path, fault: str, remote: Path, tmp_path: Path) -> tuple[int, str, dict]:
    """`ragops run` inside a mount namespace with the fault in place; returns its exit code, its
    output and the remote's files as the run left them (seen from inside)."""
    stage = tmp_path / f"stage-{fault.replace(' ', '-')}"
    stage.mkdir()
    log, listing = tmp_path / f"{stage.name}.log", tmp_path / f"{stage.name}.after"
    script = (f"set -e; {FAULTS[fault].format(remote=remote, stage=stage)}; set +e; "
              f"{BIN / 'ragops'} run > {log} 2>&1; echo $? > {log}.rc; "
              f"cd {remote} && find . -type f ! -name .filler -exec sha256sum {{}} + > {listing}")
    done = subprocess.run(["unshare", "--mount", "--map-root-user", "--propagation", "private", "bash", "-c", script],
                          cwd=repo, env=ragops_env(repo), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr  # the mounts themselves worked
    after = dict(reversed(line.split(maxsplit=1)) for line in listing.read_text().splitlines())
    return int((Path(f"{log}.rc")).read_text()), log.read_text(), {k.strip().removeprefix("./"): v for k, v in after.items()}


@pytest.mark.timeout(2400)
def test_unwritable_or_full_remote_stops_the_run_and_loses_nothing(champion_repo, tmp_path):
    repo = champion_repo
    remote = repo / ".ragops" / "dvc-remote"  # the default remote, where the champion's data was pushed
    client = mlflow_client(repo)
    pushed = _files(remote)
    registered = version_counts(client)
    assert champion(client) == "1" and pushed

    edit_first_product(repo, "Warranty:", "Extended warranty:")  # a new data version to push
    for fault in FAULTS:
        code, said, seen = _run_with_fault(repo, fault, remote, tmp_path)
        assert code == 2, said[-4000:]
        assert f"the DVC remote {remote} did not take the curated data" in said, said[-4000:]
        assert ("Read-only file system" if fault == "read-only" else "No space left on device") in said, said[-4000:]
        # the remote's versions are as they were; a full disk keeps DVC's empty partial-upload file
        assert {k: v for k, v in seen.items() if k in pushed} == pushed
        assert all(Path(k).name.startswith(".") and k.endswith(".tmp") for k in set(seen) - set(pushed)), seen
        assert _files(remote) == pushed
        assert champion(client) == "1" and [e["version"] for e in ledger(repo)] == ["1"]
        assert version_counts(client) == registered
        # the stage the run curates (a shipped example's stage, never reproduced here, has no outputs)
        status = subprocess.run([str(BIN / "dvc"), "status", "curate"], cwd=repo, capture_output=True, text=True)
        assert "up to date" in status.stdout, status.stdout + status.stderr

    succeeded(ragops(repo, "run"))
    assert set(_files(remote)) > set(pushed)  # the new version reached the remote
    assert champion(client) == "2"
