"""The local Weaviate server's disk: an index build that stops, with the path and the fix, when it
fills up, and collections made writable again once there is room.

Weaviate meets a full disk by marking every shard of the node read-only at DISK_READONLY_PERCENT
(the live version and the ledger included) and by failing the new shard's writes, while the
batch that feeds it and the schema calls wait for their deadlines (three minutes each, seen with
RAGOPS_HOME on a full tmpfs). So for the server of RAGOPS_HOME, ragops watches the disk itself:
the build runs in a worker thread, and the stage raises DiskFullError as soon as the data path's
disk passes the threshold (the worker is abandoned; the server stopping at the end of the run
ends its call, and the next build discards the unsealed version). The shards stay read-only
after the space is back; `writable_again` sets ragops' own collections back to READY.

    >>> built = watched(lambda: build_index_version(...), settings.weaviate_data_path, "building Catalog_v3")  # doctest: +SKIP
"""

from __future__ import annotations

import contextvars
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import weaviate

from components.index.server import DISK_READONLY_PERCENT
from components.index.store import ledger_collection, list_versions
from components.settings import DiskFullError

POLL_SECONDS = 0.5
T = TypeVar("T")


def disk_percent(path: Path) -> float:
    usage = shutil.disk_usage(path)
    return 100.0 * usage.used / usage.total if usage.total else 0.0


def check_room(path: Path, doing: str) -> None:
    """Raise DiskFullError if `path`'s disk is at or over the read-only threshold."""
    used = disk_percent(path)
    if used >= DISK_READONLY_PERCENT:
        raise DiskFullError(path, f"{doing} (the disk is {used:.0f}% full; the Weaviate server makes its collections "
                                  f"read-only at {DISK_READONLY_PERCENT}%)")


def watched(work: Callable[[], T], path: Path | None, doing: str) -> T:
    """`work()`, stopped with DiskFullError once `path`'s disk passes the threshold (None: not
    watched, the server is someone else's). A failure of `work` on a full disk says so too."""
    if path is None:
        return work()
    check_room(path, doing)
    outcome: dict[str, object] = {}
    context = contextvars.copy_context()  # the flow's run context (print capture, MLflow's active run)

    def run() -> None:
        try:
            outcome["value"] = context.run(work)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="index-build", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if worker.is_alive():
            check_room(path, doing)
    if "error" in outcome:
        error = outcome["error"]
        try:
            check_room(path, doing)  # a failure on a full disk is said to be one
        except DiskFullError as full:
            raise full from error  # type: ignore[misc]
        raise error  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def writable_again(client: weaviate.WeaviateClient, alias: str) -> list[str]:
    """Set the read-only shards of the alias's collections (its versions and its ledger) back to
    READY; returns the collections changed. Weaviate marks them read-only on a full disk and
    leaves them so when the space comes back."""
    changed = []
    ledger = ledger_collection(alias)
    names = list_versions(client, alias) + ([ledger] if client.collections.exists(ledger) else [])
    for name in names:
        collection = client.collections.get(name)
        if any(shard.status == "READONLY" for shard in collection.config.get_shards()):
            collection.config.update_shards(status="READY")
            changed.append(name)
    return changed
