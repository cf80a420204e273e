"""Provision the Weaviate server binary for embedded mode, built offline from the Go module proxy.

weaviate-client's embedded mode runs `<binary_dir>/weaviate-v<version>-<sha256("v<version>")>`
and downloads a release from GitHub only when that file is missing. Here it is built with
`go install github.com/weaviate/weaviate/cmd/weaviate-server@v<version>` (CGO on) and put at
that path. The version and the directory come from components.settings.Settings
(RAGOPS_WEAVIATE_VERSION, RAGOPS_CACHE_DIR). Idempotent: a present binary is reused.

    python infra/weaviate/provision.py          # make setup runs this
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from components.settings import Settings  # noqa: E402

MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"


def binary_path(settings: Settings) -> Path:
    tag = f"v{settings.weaviate_version}"
    return settings.weaviate_binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"


def build(settings: Settings) -> Path:
    target = binary_path(settings)
    if target.exists():
        print(f"weaviate: {target.name[:20]}… already provisioned in {target.parent}")
        return target
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        sys.exit("weaviate: `go` not found on PATH; install Go >= 1.25, or set RAGOPS_WEAVIATE_URL "
                 "to use an external Weaviate server instead of the embedded one")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"weaviate: building {MODULE}@v{settings.weaviate_version} from the Go module proxy "
          f"(cold: ~10 min on 2 cores; cached afterwards)", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as gobin:
        env = {**os.environ, "CGO_ENABLED": "1", "GOBIN": gobin, "GOFLAGS": "-buildvcs=false"}
        proc = subprocess.Popen([go, "install", "-v", f"{MODULE}@v{settings.weaviate_version}"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        built = 0
        tail: list[str] = []
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            if not line.startswith("go: downloading"):
                built += 1
                if built % 100 == 0:
                    print(f"weaviate: {built} packages compiled ({time.monotonic() - started:.0f}s)", flush=True)
        if proc.wait() != 0:
            sys.exit("weaviate: go install failed:\n" + "\n".join(tail))
        partial = target.with_suffix(".partial")
        shutil.copy2(Path(gobin) / "weaviate-server", partial)
        partial.chmod(0o755)
        partial.rename(target)
    print(f"weaviate: built in {time.monotonic() - started:.0f}s → {target}")
    return target


if __name__ == "__main__":
    build(Settings())
