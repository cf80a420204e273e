"""Only failures that say a service was unreachable are retried; bad data, params and bugs are not."""

from __future__ import annotations

import errno

import httpx
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

from components.config import ConfigError
from components.data.validation import DataValidationError
from components.settings import DiskFullError, disk_full
from components.index.store import WeaviateIndexError
from flows.transient import is_transient

pytestmark = pytest.mark.unit


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as caught:  # noqa: BLE001 (the chained exception is the value under test)
        return caught


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError("[Errno 111] Connection refused"),
    TimeoutError("read timed out"),
    httpx.ConnectError("connection failed"),
    MlflowException("API request failed with exception HTTPConnectionPool: Max retries exceeded"),
    MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE),
    _raised_from(RuntimeError("index build failed"), ConnectionResetError("reset by peer")),
    # what components/index/store.write_objects raised when a cluster node died under a write at ALL
    WeaviateIndexError("652 objects failed to insert into Catalog_v2 (first: WeaviateInsertManyAllFailedError("
                       "'Every object failed during insertion. Here is the set of all errors: broadcast: cannot reach "
                       "enough replicas'))"),
])
def test_unreachable_services_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    ConfigError("params.yaml: router.epochs must be > 0, got 0"),
    DataValidationError("curated data failed validation"),
    MlflowException("Registered Model with name=x not found", error_code=RESOURCE_DOES_NOT_EXIST),
    KeyError("question"),
    _raised_from(RuntimeError("stage failed"), ValueError("bad row")),
])
def test_bad_input_and_bugs_are_not(exc):
    assert not is_transient(exc)


def test_a_full_disk_is_not_retried_and_names_its_path(tmp_path):
    """MLflow calls its SQLite store's full disk unavailable; it is not (a retry fills nothing). The
    failure that names a path wins over the ones that only say so."""
    sqlite_full = MlflowException("(sqlite3.OperationalError) database or disk is full",
                                  error_code=TEMPORARILY_UNAVAILABLE)
    assert not is_transient(sqlite_full) and disk_full(sqlite_full) is sqlite_full
    checkpoint = DiskFullError(tmp_path, "saving the training checkpoint of step 8")
    raised = _raised_from(sqlite_full, _raised_from(checkpoint, OSError(errno.ENOSPC, "No space left on device")))
    assert disk_full(raised) is checkpoint and checkpoint.path == tmp_path
    assert disk_full(_raised_from(RuntimeError("x"), ValueError("bad row"))) is None
