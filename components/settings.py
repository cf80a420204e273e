"""Settings: where services live and their secrets, from RAGOPS_* environment variables (and
secret files); how a URL with a password is printed; the private home folder, its private files
and the locks every ragops process of a home waits on.

    >>> Settings().tracking_uri  # doctest: +SKIP
    'sqlite:///.../.ragops/mlflow.db'
    >>> redacted("https://user:pw@host/db")
    'https://user:***@host/db'
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def redacted(url: str | None) -> str:
    """`url` fit to print: a password in it (`https://user:pass@host`) reads `***`."""
    if not url:
        return str(url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def scrubbed(text: str, *urls: str | None) -> str:
    """`text` (a tool's output, an error) with the passwords of `urls` replaced by `***`."""
    for url in urls:
        password = urlsplit(url).password if url else None
        if password:
            text = text.replace(password, "***")
    return text


# A full disk as each layer reports it: the kernel's errno, SQLite's (MLflow's local store) and
# what libraries print when they swallow the errno.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_MESSAGES = ("No space left on device", "database or disk is full", "Disk quota exceeded")


class DiskFullError(OSError):
    """A write under RAGOPS_HOME (or wherever `path` is) found its disk full."""

    def __init__(self, path: Path, doing: str):
        super().__init__(errno.ENOSPC, f"no space left on the disk of {path} while {doing}", str(path))
        self.path, self.doing = Path(path), doing


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc`, then what it was raised from or while handling (its cause, else its context), and so on."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full(exc: BaseException) -> BaseException | None:
    """The exception of `exc`'s chain (itself, its causes and contexts) that says a disk is full,
    the most specific first: a DiskFullError (it names the path), an OSError with ENOSPC, then one
    whose message says so (SQLite's, wrapped by MLflow); None when none does."""
    chain = list(exception_chain(exc))
    for found in ([c for c in chain if isinstance(c, DiskFullError)],
                  [c for c in chain if isinstance(c, OSError) and c.errno in NO_SPACE_ERRNOS],
                  [c for c in chain if any(message in str(c) for message in NO_SPACE_MESSAGES)]):
        if found:
            return found[0]
    return None


def private_dir(path: Path) -> Path:
    """`path` as a folder only this user can read (created with missing parents; an existing one of
    ours is narrowed): RAGOPS_HOME holds the local Weaviate server's API key, the ledgers, the
    checkpoints and the locks every ragops process waits on."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    stat = path.stat()
    if stat.st_mode & 0o077 and stat.st_uid == os.getuid():
        path.chmod(0o700)
    return path


# Variables ragops reads besides Settings' own: the project a worker's flow runs may work on
# (flows/pipeline.py), and a folder of secret files, one per Settings variable, named like it
# (Kubernetes mounts a Secret there; a file beats nothing, a variable beats a file).
PROJECT_VARIABLE = "RAGOPS_PROJECT"


PROCESS_VARIABLES = (PROJECT_VARIABLE, "RAGOPS_SECRETS_DIR")


class Settings(BaseSettings):
    """Where services live and their secrets, from RAGOPS_* environment variables.

    Unset service URLs mean the embedded default: Weaviate started from the provisioned
    binary, MLflow on SQLite under `home`, Prefect's temporary local server.
    """

    model_config = SettingsConfigDict(env_prefix="RAGOPS_", frozen=True, extra="ignore",
                                      secrets_dir=os.environ.get("RAGOPS_SECRETS_DIR") or None)

    home: Path = Path(".ragops")
    cache_dir: Path = Path.home() / ".cache" / "ragops"
    weaviate_url: str | None = None
    weaviate_grpc_url: str | None = None
    weaviate_api_key: SecretStr | None = None
    # The embedded server version; infra/weaviate/provision.py builds exactly this one.
    # >= 1.32 for collection aliases; 1.35.2 is listed by the Go module proxy and builds offline.
    weaviate_version: str = "1.35.2"
    mlflow_tracking_uri: str | None = None
    dvc_remote_url: str | None = None
    serve_keys: Path | None = None  # the API key file of `ragops serve` (components/serving/keys.py)

    @property
    def weaviate_binary_dir(self) -> Path:
        return self.cache_dir / "weaviate"

    @property
    def weaviate_data_path(self) -> Path:
        return (self.home / "weaviate").resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"


def open_private(path: Path, truncate: bool = False):
    """Open for writing (appending unless `truncate`), created 0600: the server record holds its
    key, and a lock another local user could take would hang every ragops process of this home."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    return os.fdopen(os.open(path, flags, 0o600), "w" if truncate else "a")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (a private file) for the block: held across processes."""
    with open_private(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
