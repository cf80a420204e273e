"""`make test` in a shell set up for production touches none of its services: the suite's
environment loses every variable naming a service or its credentials (tests/support/environment.py),
and keeps the cache `make test` filled."""

from __future__ import annotations

import os

from tests.support.environment import without_services


def test_a_production_shell_leaves_no_service_for_the_tests_to_reach():
    shell = {"RAGOPS_WEAVIATE_URL": "https://weaviate.prod:8080", "RAGOPS_WEAVIATE_API_KEY": "k",
             "RAGOPS_MLFLOW_TRACKING_URI": "https://mlflow.prod", "RAGOPS_DVC_REMOTE_URL": "s3://prod/dvc",
             "RAGOPS_HOME": "/srv/ragops", "RAGOPS_SECRETS_DIR": "/run/secrets", "RAGOPS_SERVE_KEYS": "/etc/keys",
             "PREFECT_API_URL": "https://prefect.prod/api", "PREFECT_HOME": "/srv/prefect",
             "MLFLOW_TRACKING_URI": "https://mlflow.prod", "MLFLOW_TRACKING_PASSWORD": "p",
             "MLFLOW_REGISTRY_URI": "https://mlflow.prod", "AWS_SECRET_ACCESS_KEY": "s", "AWS_PROFILE": "prod",
             "RAGOPS_CACHE_DIR": "/root/.cache/ragops", "RAGOPS_WEAVIATE_VERSION": "1.35.2", "PATH": "/usr/bin",
             "HOME": "/root"}
    removed = without_services(shell)
    assert shell == {"RAGOPS_CACHE_DIR": "/root/.cache/ragops", "RAGOPS_WEAVIATE_VERSION": "1.35.2",
                     "PATH": "/usr/bin", "HOME": "/root"}
    assert "RAGOPS_WEAVIATE_URL" in removed and "PREFECT_API_URL" in removed
    # and the suite's own environment is so (conftest.py applies it before anything reads it)
    assert not [key for key in os.environ if key.startswith(("RAGOPS_WEAVIATE_URL", "RAGOPS_MLFLOW", "PREFECT_API_URL"))]
