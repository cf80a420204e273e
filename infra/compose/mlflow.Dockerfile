# syntax=docker/dockerfile:1
# MLflow tracking server with what its stores need: psycopg2 for the PostgreSQL backend store,
# boto3 for the S3 artifact store (SeaweedFS here). The image ghcr.io/mlflow/mlflow ships neither.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true

# mlflow pinned like the project (pyproject.toml); the two drivers are independent of it.
RUN pip install mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.44.8 \
    && useradd --create-home --uid 10001 mlflow

USER mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
