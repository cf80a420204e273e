"""DVC: reproduce the curate stage, push to the remote, read the data versions (md5s).

    >>> versions = reproduce_and_push(Path("."), remote_url="/tmp/dvc-remote")  # doctest: +SKIP
    >>> versions["documents.jsonl"]  # doctest: +SKIP
    '3f2a...'
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


class VersioningError(RuntimeError):
    """DVC failed; the message carries DVC's own output and what to check."""


def run_dvc(project_path: Path, *args: str) -> str:
    """Run the DVC CLI of this interpreter's environment inside project_path."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project_path, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise VersioningError(f"`dvc {' '.join(args)}` failed in {project_path} (exit {proc.returncode}):\n"
                              f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
    return proc.stdout


def ensure_remote(project_path: Path, remote_url: str, name: str = "storage") -> None:
    """Make `remote_url` the default remote, in .dvc/config.local (machine-specific, not committed)."""
    if "://" not in remote_url:
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    run_dvc(project_path, "remote", "add", "--local", "--force", "--default", name, remote_url)


def data_versions(project_path: Path, stage: str = "curate") -> dict[str, str]:
    """{output file name: md5} of a stage, from dvc.lock: the data versions models are traced to."""
    lock_path = project_path / "dvc.lock"
    if not lock_path.exists():
        raise VersioningError(f"{lock_path} missing; run `dvc repro {stage}` first")
    lock = yaml.safe_load(lock_path.read_text())
    outs = lock.get("stages", {}).get(stage, {}).get("outs", [])
    if not outs:
        raise VersioningError(f"{lock_path}: stage {stage!r} has no outs; check dvc.yaml")
    return {Path(o["path"]).name: o["md5"] for o in outs}


def reproduce_and_push(project_path: Path, remote_url: str, stage: str = "curate") -> tuple[dict[str, str], bool]:
    """`dvc repro` (skips when nothing changed) then `dvc push`; returns (versions, whether it ran)."""
    ensure_remote(project_path, remote_url)
    output = run_dvc(project_path, "repro", stage)
    ran = "didn't change, skipping" not in output
    try:
        run_dvc(project_path, "push")
    except VersioningError as exc:
        raise VersioningError(
            f"the DVC remote {remote_url} did not take the curated data, so it has no data version yet: nothing was "
            f"trained, indexed or promoted. The curated files and DVC's local cache hold it (`dvc status` is clean); "
            f"the versions already on the remote are unchanged. Make the remote writable or free space on it (or "
            f"point RAGOPS_DVC_REMOTE_URL elsewhere) and rerun: the rerun pushes without curating again.\n{exc}") from None
    return data_versions(project_path, stage), ran


def record_good_versions(record_path: Path, versions: dict[str, str]) -> None:
    """Remember the data versions that last passed validation (what a failed run falls back to)."""
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(versions, indent=2, sort_keys=True))


def read_good_versions(record_path: Path) -> dict[str, str] | None:
    return json.loads(record_path.read_text()) if record_path.exists() else None


def keep_failed_batch(curated_path: Path, names: list[str], target: Path) -> Path:
    """Copy a batch that failed validation aside, for inspection."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(curated_path / name, target / name)
    return target
