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
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from components.settings import Settings  # noqa: E402
from infra.gobuild import go_binary, install_binary, run_go  # noqa: E402

MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"


def binary_path(settings: Settings) -> Path:
    tag = f"v{settings.weaviate_version}"
    return settings.weaviate_binary_dir / f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"


def build(settings: Settings) -> Path:
    target = binary_path(settings)
    if target.exists():
        print(f"weaviate: {target.name[:20]}… already provisioned in {target.parent}")
        return target
    go = go_binary("weaviate", ", or set RAGOPS_WEAVIATE_URL to use an external Weaviate server "
                   "instead of the embedded one")
    print(f"weaviate: building {MODULE}@v{settings.weaviate_version} from the Go module proxy "
          f"(cold: ~10 min on 2 cores; cached afterwards)", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as gobin:
        env = {**os.environ, "CGO_ENABLED": "1", "GOBIN": gobin, "GOFLAGS": "-buildvcs=false"}
        run_go("weaviate", [go, "install", "-v", f"{MODULE}@v{settings.weaviate_version}"], env)
        install_binary(Path(gobin) / "weaviate-server", target)
    print(f"weaviate: built in {time.monotonic() - started:.0f}s → {target}")
    return target


if __name__ == "__main__":
    build(Settings())
