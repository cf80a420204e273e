"""Which failures are worth retrying: a service that did not answer (Weaviate, MLflow, the DVC
remote, a Prefect API), as opposed to bad data, bad params or a bug, which fail the same way
every time and must stop the run with their own message.

    >>> is_transient(ConnectionRefusedError("connection refused"))
    True
    >>> is_transient(ValueError("params.yaml: router.epochs must be > 0"))
    False
"""

from __future__ import annotations

import httpx
import requests
from mlflow.exceptions import MlflowException
from weaviate.exceptions import (UnexpectedStatusCodeError, WeaviateConnectionError, WeaviateGRPCUnavailableError,
                                 WeaviateStartUpError, WeaviateTimeoutError)

from components.settings import disk_full, exception_chain

TRANSIENT_TYPES = (ConnectionError, TimeoutError, httpx.TransportError, requests.ConnectionError, requests.Timeout,
                   WeaviateConnectionError, WeaviateGRPCUnavailableError, WeaviateTimeoutError, WeaviateStartUpError)
TRANSIENT_MLFLOW_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
# What MLflow's and DVC's HTTP clients say once their own retries are exhausted, and what a Weaviate
# cluster says when a replica's node died during a write (until the others see it gone, a write at
# consistency ALL fails; the retry builds the version on the nodes that answer).
TRANSIENT_MESSAGES = ("Max retries exceeded", "Connection refused", "Connection reset", "timed out",
                      "Temporary failure in name resolution", "503 Service Unavailable", "502 Bad Gateway",
                      "cannot reach enough replicas")


def is_transient(exc: BaseException) -> bool:
    """True if the exception, or one it was raised from, says a service was unreachable or overloaded.
    A full disk is not (MLflow calls its SQLite store's "database or disk is full" unavailable):
    retrying fills nothing, and the run must say where to free space."""
    if disk_full(exc) is not None:
        return False
    for cause in exception_chain(exc):
        if isinstance(cause, TRANSIENT_TYPES):
            return True
        if isinstance(cause, UnexpectedStatusCodeError) and (cause.status_code >= 500 or cause.status_code == 429):
            return True
        if isinstance(cause, MlflowException) and cause.error_code in TRANSIENT_MLFLOW_CODES:
            return True
        if any(message in str(cause) for message in TRANSIENT_MESSAGES):
            return True
    return False
