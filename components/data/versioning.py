"""DVC: reproduce the curate stage, push to the remote, read the data versions (md5s).

    >>> versions = reproduce_and_push(Path("."), remote_url="/tmp/dvc-remote")  # doctest: +SKIP
    >>> versions["documents.jsonl"]  # doctest: +SKIP
    '3f2a...'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from components.config import DataConfig, load_params
from components.settings import Settings, redacted, scrubbed


class VersioningError(RuntimeError):
    """DVC failed; the message carries DVC's own output and what to check."""


def run_dvc(project_path: Path, *args: str) -> str:
    """Run the DVC CLI of this interpreter's environment inside project_path."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project_path, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        said = scrubbed(f"{proc.stdout[-2000:]}{proc.stderr[-4000:]}", Settings().dvc_remote_url)
        raise VersioningError(f"`dvc {' '.join(args)}` failed in {project_path} (exit {proc.returncode}):\n{said}")
    return proc.stdout


def ensure_remote(project_path: Path, remote_url: str, name: str = "storage") -> None:
    """Make `remote_url` the default remote, in .dvc/config.local (machine-specific, not committed).
    Written through DVC's Python API, not `dvc remote add`: a URL with credentials would be on a
    command line every local user sees in `ps`; and the file is made readable by this user only."""
    if "://" not in remote_url:
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    from dvc.repo import Repo  # imported here: a second or so, and only the pipeline's data step needs it

    with Repo(str(project_path)) as repo, repo.config.edit("local") as config:
        config["remote"][name] = {"url": remote_url}
        config["core"]["remote"] = name
    local = project_path / ".dvc" / "config.local"
    if local.exists():
        local.chmod(0o600)


STAGE_NOTE = ("# Written by ragops for {params}: the curate stage of that params file, made from the project's\n"
              "# dvc.yaml (whose stage curates params.yaml's data). Commit it with its dvc.lock.\n")


def stage_file(project_path: Path, params_path: Path, curated_dir: str) -> Path:
    """The dvc.yaml whose curate stage curates the data `params_path` names. The project's own for
    its params.yaml; for another params file, one written beside it from the project's curate
    stage, so DVC reads `${data.raw_dir}` and `${data.curated_dir}` from that file and every step of a
    run reads one params file. `curated_dir` (the file's `data.curated_dir`) must be its own:
    two stages cannot write one DVC output."""
    project, params = project_path.resolve(), params_path.resolve()
    if params == project / "params.yaml":
        return project / "dvc.yaml"
    if not params.is_relative_to(project):
        raise VersioningError(f"{params_path} is outside the project {project}; DVC versions only what is inside "
                              f"it: move the params file (and its data) into the project")
    folder, relative = params.parent, params.relative_to(project).as_posix()
    if folder == project or (params.name != "params.yaml" and (folder / "params.yaml").exists()):
        raise VersioningError(f"{params_path}: a params file other than the project's params.yaml needs a folder of "
                              f"its own, where ragops writes its DVC stage (e.g. examples/<name>/params.yaml)")
    own = load_params(project / "params.yaml").data if (project / "params.yaml").exists() else DataConfig()
    if Path(curated_dir) == Path(own.curated_dir):
        raise VersioningError(f"{params_path}: data.curated_dir {curated_dir!r} is params.yaml's too; give this params "
                              f"file a folder of its own (e.g. {folder.relative_to(project).as_posix()}/curated): "
                              f"two data sets cannot share one DVC output")
    curate = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["curate"]
    stage = {**curate, "wdir": os.path.relpath(project, folder),
             "cmd": curate["cmd"].replace("--params params.yaml", f"--params {relative}"),
             "params": [{relative: list(curate["params"])}]}
    note = STAGE_NOTE.format(params=relative)
    text = note + yaml.safe_dump(
        {**({"vars": [params.name]} if params.name != "params.yaml" else {}), "stages": {"curate": stage}},
        sort_keys=False)
    target = folder / "dvc.yaml"
    written = target.read_text() if target.exists() else None
    if written is not None and not written.startswith(note):
        raise VersioningError(f"{target} exists and ragops did not write it for {relative}; move {relative} to a "
                              f"folder of its own")
    if written != text:
        target.write_text(text)
    return target


def data_versions(project_path: Path, stage: str = "curate", stages_file: Path | None = None) -> dict[str, str]:
    """{output file name: md5} of a stage, from dvc.lock: the data versions models are traced to."""
    lock_path = (stages_file or project_path / "dvc.yaml").parent / "dvc.lock"
    if not lock_path.exists():
        raise VersioningError(f"{lock_path} missing; run `dvc repro {stage}` first")
    lock = yaml.safe_load(lock_path.read_text())
    outs = lock.get("stages", {}).get(stage, {}).get("outs", [])
    if not outs:
        raise VersioningError(f"{lock_path}: stage {stage!r} has no outs; check dvc.yaml")
    return {Path(o["path"]).name: o["md5"] for o in outs}


def reproduce_and_push(project_path: Path, remote_url: str, stage: str = "curate",
                       stages_file: Path | None = None) -> tuple[dict[str, str], bool]:
    """`dvc repro` (skips when nothing changed) then `dvc push`; returns (versions, whether it ran).
    `stages_file`: the dvc.yaml holding the stage (default: the project's, see `stage_file`)."""
    ensure_remote(project_path, remote_url)
    target = stage if stages_file is None else f"{stages_file.resolve().relative_to(project_path.resolve()).as_posix()}:{stage}"
    output = run_dvc(project_path, "repro", target)
    ran = "didn't change, skipping" not in output
    try:
        run_dvc(project_path, "push", target)  # this stage's outputs: another data set's may not be here
    except VersioningError as exc:
        raise VersioningError(
            f"the DVC remote {redacted(remote_url)} did not take the curated data, so it has no data version yet: nothing was "
            f"trained, indexed or promoted. The curated files and DVC's local cache hold it (`dvc status {target}` is "
            f"clean); the versions already on the remote are unchanged. Make the remote writable or free space on it (or "
            f"point RAGOPS_DVC_REMOTE_URL elsewhere) and rerun: the rerun pushes without curating again.\n"
            f"{scrubbed(str(exc), remote_url)}") from None
    return data_versions(project_path, stage, stages_file), ran


def _good_dir(record_dir: Path, stages_file: Path) -> Path:
    return record_dir / hashlib.sha256(str(stages_file.resolve()).encode()).hexdigest()[:12]


def record_good_versions(record_dir: Path, stages_file: Path, versions: dict[str, str]) -> Path:
    """Remember the data that last passed validation, per stage file (each params file curates its
    own data): its versions, and a copy of the dvc.lock that names them, which is what a failed
    run's restore hint puts back (the project's committed dvc.lock may be older). Returns the copy."""
    target = _good_dir(record_dir, stages_file)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(stages_file.parent / "dvc.lock", target / "dvc.lock")
    (target / "versions.json").write_text(json.dumps({"stages_file": str(stages_file.resolve()), **versions},
                                                     indent=2, sort_keys=True))
    return target / "dvc.lock"


def read_good_versions(record_dir: Path, stages_file: Path) -> tuple[dict[str, str], Path] | None:
    """(versions, the kept dvc.lock) of the data that last passed validation, or None."""
    target = _good_dir(record_dir, stages_file)
    if not (target / "versions.json").is_file():
        return None
    versions = json.loads((target / "versions.json").read_text())
    versions.pop("stages_file", None)
    return versions, target / "dvc.lock"


def keep_failed_batch(curated_path: Path, names: list[str], target: Path) -> Path:
    """Copy a batch that failed validation aside, for inspection."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(curated_path / name, target / name)
    return target
