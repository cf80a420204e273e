# Two commands for a new user: `make run` (the whole pipeline on the demo data) and
# `make test` (the test suite). Both bootstrap what they need, idempotently, and cache it
# under $(CACHE): the uv tool, its package cache, the Weaviate binary and the models.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
CACHE ?= $(HOME)/.cache/ragops
VENV ?= .venv
UV := $(CACHE)/tools/bin/uv
STAMP := $(VENV)/.ragops-installed

export UV_CACHE_DIR ?= $(CACHE)/uv
# Byte-compile at install: this environment may set PYTHONDONTWRITEBYTECODE, and without .pyc
# files every process (and Prefect's temporary server) recompiles its imports from source.
export UV_COMPILE_BYTECODE := 1
export RAGOPS_CACHE_DIR ?= $(CACHE)
# uv reads the system CA bundle only through this variable.
ifneq ($(wildcard /etc/ssl/certs/ca-certificates.crt),)
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
endif

.PHONY: setup weaviate seaweedfs models postgres run test lock clean-state python-faq python-faq-data

# With RAGOPS_WEAVIATE_URL set the pipeline uses that server: no Weaviate binary to build.
run: $(STAMP) models $(if $(RAGOPS_WEAVIATE_URL),,weaviate)
	$(VENV)/bin/ragops run

# Two workers, one per core of the reference machine (pytest-xdist; worksteal evens out tests of
# very different lengths). A single test or marker runs alone: `.venv/bin/python -m pytest -m unit`.
TEST_WORKERS ?= 2
test: setup models postgres seaweedfs
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# The server-mode test keeps MLflow's and Prefect's databases in PostgreSQL, as production does:
# the binaries of Debian's postgresql package (tests/support/postgres.py starts a cluster of its own),
# installed here when they are missing. That needs root; otherwise, install the package yourself.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		echo "==> installing Debian's postgresql (the server-mode test's database server)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

setup: $(STAMP) weaviate

$(UV):
	@echo "==> bootstrapping uv into $(CACHE)/tools"
	$(PYTHON) -m venv $(CACHE)/tools
	$(CACHE)/tools/bin/pip install --quiet --progress-bar on "uv==0.13.9"

$(STAMP): requirements.lock pyproject.toml | $(UV)
	@echo "==> installing the pinned dependency set into $(VENV) (cached in $(UV_CACHE_DIR))"
	test -x $(VENV)/bin/python || $(UV) venv --quiet -p $(PYTHON) $(VENV)
	$(UV) pip sync -p $(VENV)/bin/python requirements.lock
	$(UV) pip install -p $(VENV)/bin/python --no-deps -e .
	touch $@

weaviate: $(STAMP)
	$(VENV)/bin/python infra/weaviate/provision.py

# The tests' S3 store (DVC's remote and MLflow's artifacts in the server-mode and secrets tests):
# SeaweedFS's `weed`, built once from the Go module proxy (~4 min cold on 2 cores) into the cache.
seaweedfs: $(STAMP)
	$(VENV)/bin/python infra/seaweedfs/provision.py

models: $(STAMP)
	$(VENV)/bin/ragops models fetch

# Regenerate requirements.lock after changing dependencies in pyproject.toml (for any Python 3.11:
# with the local interpreter's patch version, markers such as async-timeout's would drop packages).
lock: | $(UV)
	$(UV) pip compile pyproject.toml -p 3.11 -o requirements.lock --no-emit-package openvino-telemetry

# All of a project's state: RAGOPS_HOME when it is set, else .ragops.
clean-state:
	rm -rf -- "$(or $(RAGOPS_HOME),.ragops)"

# The second example domain (examples/python-faq): its data is committed; `python-faq-data` makes
# it again from Debian's python3.11-doc package (downloaded with apt-get, not installed).
PYFAQ_DEB := python3.11-doc=3.11.2-6+deb12u9
python-faq: setup models
	$(VENV)/bin/ragops run --params examples/python-faq/params.yaml

python-faq-data: $(STAMP)
	rm -rf $(CACHE)/python-faq && mkdir -p $(CACHE)/python-faq
	cd $(CACHE)/python-faq && apt-get download $(PYFAQ_DEB) && dpkg-deb -x python3.11-doc_*.deb doc
	$(VENV)/bin/python examples/python-faq/convert.py \
		--faq $(CACHE)/python-faq/doc/usr/share/doc/python3.11/html/_sources/faq
