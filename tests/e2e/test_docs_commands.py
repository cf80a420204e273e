"""The commands the README and docs/ show work as written: every shell block marked runnable
(`<!-- runnable ... -->` on the line before its fence) runs, with bash -e, in the tiny champion's
project (a project right after `ragops run`, `.venv` linked), and must exit 0."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import ragops_env
from tests.support.project import BIN

pytestmark = pytest.mark.e2e
# What a block's output must show besides exiting 0 (a lineage query that finds nothing is not a
# lineage; the README's edit is reindexed into champion v2, and the rollback puts v1 back).
SHOWS = {"README.md:1": ("A: ", "champion v2 → v1, index Catalog_v2 → Catalog_v1"),
         "docs/lineage.md:1": ("ragops-router v1",), "docs/lineage.md:2": (" Catalog_v1 ",)}
MARKED = re.compile(r"^<!-- runnable\b[^\n]*-->\n```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def runnable_blocks(root: Path) -> dict[str, str]:
    """`page:n` → the n-th runnable block of each page (README.md and docs/*.md)."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return {f"{page.relative_to(root)}:{n}": block for page in pages
            for n, block in enumerate(MARKED.findall(page.read_text()), start=1)}


def test_the_runnable_blocks_of_the_docs_run_as_written(project_root, champion_repo):
    blocks = runnable_blocks(project_root)
    assert {name.split(":")[0] for name in blocks} >= {"README.md", "docs/lineage.md"}, blocks
    (champion_repo / ".venv").symlink_to(BIN.parent)
    for name, block in blocks.items():
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=champion_repo,
                              env={**ragops_env(champion_repo), "PATH": f"{BIN}:{os.environ['PATH']}"},
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{name} failed:\n{block}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert all(shown in done.stdout for shown in SHOWS.get(name, ())), f"{name} printed:\n{done.stdout[-3000:]}"
    assert set(SHOWS) <= set(blocks)
