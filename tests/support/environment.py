"""The suite never talks to a user's services. A shell set up for production (RAGOPS_WEAVIATE_URL,
RAGOPS_MLFLOW_TRACKING_URI, PREFECT_API_URL, MLflow's or S3's credentials, ...) would otherwise have
the tests' `ragops` runs, which inherit the environment, write collections, model versions, aliases
and flow runs there. Every test starts the servers it uses and names them itself. Standard library
only: tests/conftest.py calls it before anything reads the environment."""

from __future__ import annotations

from collections.abc import MutableMapping

# Variables naming a service, its credentials or a project's state, read by ragops, Prefect, MLflow
# and boto3 (the DVC remote and MLflow's artifacts on S3).
SERVICE_PREFIXES = ("RAGOPS_", "PREFECT_", "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_URI", "AWS_")
# Kept: where `make test` put the Weaviate binary and the models, and which Weaviate version it built.
KEPT = frozenset({"RAGOPS_CACHE_DIR", "RAGOPS_WEAVIATE_VERSION"})


def without_services(environ: MutableMapping[str, str]) -> list[str]:
    """Remove from `environ` every variable that could point a test at a service it did not start;
    returns the names removed."""
    removed = sorted(key for key in environ if key.startswith(SERVICE_PREFIXES) and key not in KEPT)
    for key in removed:
        del environ[key]
    return removed
