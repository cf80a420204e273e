"""The tiny champion most pipeline tests start from, built once per pytest session.

`ragops run` on the tiny profile (curate, validate, train both models, index, evaluate, promote)
takes about a minute; a dozen tests need its result only as their starting point. It is built
once, saved, and restored for each test at the same absolute path, because MLflow's store holds
absolute artifact locations and Weaviate's data path is absolute too: a restored copy is the
project exactly as that run left it, as if the test had just run it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from components.index.shared_server import stop_advertised
from tests.support.cli import ragops, succeeded
from tests.support.project import tiny_project
from tests.support.registry import champion, ledger, mlflow_client


@dataclass(frozen=True)
class ChampionSnapshot:
    repo: Path  # where every test finds the project
    saved: Path  # the project as the session's `ragops run` left it

    def restore(self) -> Path:
        """The project as the champion's run left it, at `repo` (whatever the last test did to it)."""
        _stop_leftover_weaviate(self.repo)
        shutil.rmtree(self.repo, ignore_errors=True)
        shutil.copytree(self.saved, self.repo, symlinks=True)
        _reconnect_mlflow_stores(self.repo)
        return self.repo


def build_champion(project_root: Path, folder: Path) -> ChampionSnapshot:
    """One tiny `ragops run` from a fresh copy: bundle v1 promoted, its index `Catalog_v1` live."""
    repo = tiny_project(project_root, folder / "repo")
    succeeded(ragops(repo, "run", temporary_prefect=True))  # as `make run` runs it
    assert champion(mlflow_client(repo)) == "1" and [e["action"] for e in ledger(repo)] == ["promote"]
    assert not (repo / ".ragops" / "weaviate-server.json").exists(), "the run left its Weaviate server running"
    saved = folder / "saved"
    shutil.copytree(repo, saved, symlinks=True)
    return ChampionSnapshot(repo, saved)


def _reconnect_mlflow_stores(repo: Path) -> None:
    """MLflow keeps one SQLAlchemy engine per database URI for the life of the process (class-level
    `_engine_map` of its SQL stores), and its pooled SQLite connections still hold the replaced
    mlflow.db open: a client of this process would read the deleted file. Disposing an engine
    closes them; its next query opens the restored file."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    for store in (TrackingStore, RegistryStore):
        for uri, engine in list(store._engine_map.items()):
            if str(repo) in uri:
                engine.dispose()


def _stop_leftover_weaviate(repo: Path) -> None:
    """A test that SIGKILLed a ragops process can leave the project's local Weaviate server running
    (it is in its own session); it must not serve the data folder the next test's copy replaces."""
    stop_advertised(repo / ".ragops")
