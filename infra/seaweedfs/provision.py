"""Provision SeaweedFS's `weed` binary, the S3-compatible store the tests run DVC's remote and
MLflow's artifacts on (Apache-2.0; MinIO, the usual choice, is AGPL). Built from the Go module proxy.

`go install ...@version` refuses this module (its go.mod has replace directives), so the module's
source is fetched with `go mod download` and `./weed` built inside a writable copy of it. The
version is pinned here: the module has no tagged release on the proxy, and this pseudo-version is
the one installed and run with ragops' tests. The binary goes to `$RAGOPS_CACHE_DIR/seaweedfs/`.
Idempotent: a present binary is reused.

    python infra/seaweedfs/provision.py          # make test runs this
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from components.settings import Settings  # noqa: E402
from infra.gobuild import go_binary, install_binary, run_go  # noqa: E402

MODULE = "github.com/seaweedfs/seaweedfs"
VERSION = "v0.0.0-20261109003541-7506e5f91cd6"


def binary_path(settings: Settings) -> Path:
    return settings.cache_dir / "seaweedfs" / f"weed-{VERSION}"


def build(settings: Settings) -> Path:
    target = binary_path(settings)
    if target.exists():
        print(f"seaweedfs: {target.name} already provisioned in {target.parent}")
        return target
    go = go_binary("seaweedfs")
    print(f"seaweedfs: building {MODULE}/weed@{VERSION} from the Go module proxy (cold: several minutes on "
          f"2 cores; cached afterwards)", flush=True)
    started = time.monotonic()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}
    fetched = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{VERSION}"], env=env, capture_output=True,
                             text=True)
    if fetched.returncode != 0:
        sys.exit(f"seaweedfs: `go mod download {MODULE}@{VERSION}` failed:\n{fetched.stdout}{fetched.stderr}")
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "src"
        shutil.copytree(json.loads(fetched.stdout)["Dir"], source)  # the module cache is read-only
        for path in source.rglob("*"):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        run_go("seaweedfs", [go, "build", "-v", "-o", str(Path(work) / "weed"), "./weed"], env, cwd=source)
        install_binary(Path(work) / "weed", target)
    print(f"seaweedfs: built in {time.monotonic() - started:.0f}s → {target}")
    return target


if __name__ == "__main__":
    build(Settings())
