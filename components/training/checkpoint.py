"""Training checkpoints: a killed run resumes from its last saved step instead of starting over.

A checkpoint directory belongs to one training job, named by a fingerprint of everything that
shapes the result (config, seed, base model, training data), so a resumed run can only ever
continue the same job. Each save is a new `step-NNNNNN` directory written under a temporary
name and renamed into place, so a kill during a save leaves the previous checkpoint intact.

    >>> root = Path(".ragops/checkpoints/generator-3f2a")  # doctest: +SKIP
    >>> save_checkpoint(root, 8, {"adapter": state, "optimizer": opt.state_dict()}, {"history": h})  # doctest: +SKIP
    >>> step, tensors, meta = load_latest_checkpoint(root)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from components.settings import NO_SPACE_ERRNOS, DiskFullError

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def save_checkpoint(root: Path, step: int, state: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Write step `step` atomically, then drop all but the newest `keep` checkpoints. A write that
    fails leaves no partial directory behind; on a full disk it raises DiskFullError naming `root`."""
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp-{os.getpid()}"
    # serialised in memory first: torch's own writer turns ENOSPC into "iostream error", a plain
    # write keeps the errno
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for path, data in ((tmp / STATE_FILE, buffer.getbuffer()),
                           (tmp / META_FILE, json.dumps({"step": step, **meta}, indent=1).encode())):
            with path.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFullError(root, f"saving the training checkpoint of step {step}") from exc
        raise
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in _checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest_checkpoint(root: Path) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """(step, tensors, meta) of the newest complete checkpoint, or None when there is none."""
    found = _checkpoints(root)
    if not found:
        return None
    latest = found[-1]
    meta = json.loads((latest / META_FILE).read_text())
    state = torch.load(latest / STATE_FILE, map_location="cpu", weights_only=True)
    return int(meta["step"]), state, meta


def _checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / META_FILE).is_file() and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def prune_jobs(parent: Path, keep: int) -> None:
    """Keep the checkpoints of the `keep` most recently touched jobs under `parent`."""
    if not parent.is_dir():
        return
    jobs = sorted((p for p in parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in jobs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
