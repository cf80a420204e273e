"""Watch the documents folder: report each settled batch of added, edited and removed files.

Polling (file size and mtime) rather than inotify: it works the same on network and container
volumes, and a scan of a few thousand files costs milliseconds.

    >>> stop = threading.Event()  # doctest: +SKIP
    >>> watch_folder(Path("data/raw/documents"), print, poll_seconds=1.0, settle_seconds=1.0, stop=stop)  # doctest: +SKIP
    Changes(added=[], modified=['p-001.md'], removed=[])
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Snapshot = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class Changes:
    added: list[str]
    modified: list[str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    @property
    def count(self) -> int:
        return len(self.added) + len(self.modified) + len(self.removed)


def snapshot(folder: Path, pattern: str = "*.md") -> Snapshot:
    """File name → (size, mtime in ns) of every matching file."""
    found: Snapshot = {}
    for path in folder.glob(pattern):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed between listing and stat
            continue
        found[path.name] = (stat.st_size, stat.st_mtime_ns)
    return found


def diff(before: Snapshot, after: Snapshot) -> Changes:
    return Changes(added=sorted(set(after) - set(before)), removed=sorted(set(before) - set(after)),
                   modified=sorted(k for k in set(before) & set(after) if before[k] != after[k]))


def watch_folder(folder: Path, on_change: Callable[[Changes], None], poll_seconds: float, settle_seconds: float,
                 stop: threading.Event) -> None:
    """Call `on_change` once per burst: after a change, wait until the folder has been quiet for
    `settle_seconds`, then report everything that changed since the last report."""
    reported = snapshot(folder)
    while not stop.wait(poll_seconds):
        current = snapshot(folder)
        if current == reported:
            continue
        while not stop.wait(settle_seconds):
            latest = snapshot(folder)
            if latest == current:
                break
            current = latest
        changes = diff(reported, current)
        if changes:
            on_change(changes)
        reported = current
