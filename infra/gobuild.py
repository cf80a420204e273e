"""Build a Go program from the Go module proxy with progress lines (the servers ragops runs as
processes: Weaviate, and SeaweedFS for the tests' S3 store), and put the binary in place atomically."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def go_binary(what: str, otherwise: str = "") -> str:
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        sys.exit(f"{what}: `go` not found on PATH; install Go >= 1.25{otherwise}")
    return go


def run_go(what: str, command: list[str], env: dict, cwd: Path | None = None) -> None:
    """`go install -v` / `go build -v`, printing a line every 100 packages compiled; exits with the
    last lines of Go's output when it fails."""
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    built = 0
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        if not line.startswith("go: downloading"):
            built += 1
            if built % 100 == 0:
                print(f"{what}: {built} packages compiled ({time.monotonic() - started:.0f}s)", flush=True)
    if proc.wait() != 0:
        sys.exit(f"{what}: `{' '.join(command[:2])}` failed:\n" + "\n".join(tail))


def install_binary(built: Path, target: Path) -> None:
    """Copy `built` to `target` through a partial file, so a half-copied binary is never taken."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    shutil.copy2(built, partial)
    partial.chmod(0o755)
    partial.rename(target)
