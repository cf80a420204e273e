"""Every link of the README and docs/ leads somewhere: a relative link to a file that exists, and
an anchor to a heading of that page (GitHub's anchors: lower case, punctuation dropped, spaces to
hyphens). A page renamed or a heading reworded without its links fails here."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives `page`'s headings (code blocks hold no headings)."""
    text = FENCE.sub("", page.read_text())
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in HEADING.findall(text)}


def broken_links(root: Path) -> list[str]:
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)} links to {target}"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{where}: no heading with that anchor in {linked.relative_to(root)}")
    return broken


def test_every_link_of_the_docs_leads_to_a_file_and_heading_that_exist(project_root):
    assert broken_links(project_root) == []


def test_a_missing_page_or_heading_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Scale-out: the `engines`\n\n```\n# not a heading\n```\n")
    (tmp_path / "README.md").write_text("[ok](docs/a.md#scale-out-the-engines) [gone](docs/b.md) "
                                        "[bad](docs/a.md#not-a-heading) [web](https://example.com)\n")
    assert broken_links(tmp_path) == ["README.md links to docs/b.md: no such file",
                                      "README.md links to docs/a.md#not-a-heading: no heading with that anchor in docs/a.md"]
