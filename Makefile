# TaskFlow — the two commands: `make run` (whole suite, embedded defaults) and `make test`.
SHELL := /bin/bash
UV_VERSION := 0.13.9
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
SYNC := $(UV) sync --all-packages --frozen
PACKAGES := libs/kit libs/devstack user-service task-service stats-service api-gateway

.PHONY: help run seed test test-fast test-without-db test-compose lint audit fmt migrate bench bench-full bench-gateway bench-size clean uv

help:
	@echo "make run      start gateway + services on 127.0.0.1 (embedded PostgreSQL/Redis unless configured)"
	@echo "make test     run every test (unit, integration, whole-suite)"
	@echo "make test-without-db  stats-service and the gateway in environments without the kit's [db] extra"
	@echo "make test-compose  build the images and run the scaled compose stack with podman"
	@echo "make lint     ruff + mypy + compose, Dockerfiles, workflow and Kubernetes manifests"
	@echo "make audit    known vulnerabilities in the locked dependencies (needs the network)"
	@echo "make fmt      format the code"
	@echo "make migrate  apply database migrations"
	@echo "make seed     load a demo team into a running 'make run' (sign in as demo / demo-password)"
	@echo "make bench    suite benchmark, quick (< 3 min); COMPARE=<rev> adds that commit's stack"
	@echo "make bench-full  suite benchmark, full (3 rounds; e.g. COMPARE=a245de8)"
	@echo "make bench-gateway  the gateway's own benchmark (needs wrk and nginx); COMPARE=<rev>, INSTRUCTIONS=1 (valgrind)"
	@echo "make bench-size  1M + 10k tasks in one task database: every list query, both users"

# Bootstrap uv into .tools/ when it is not on PATH: a fresh machine needs only Python and pip.
.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

uv: $(if $(findstring .tools,$(UV)),.tools/bin/uv)

run: uv
	$(SYNC)
	$(UV) run --frozen python -m taskflow_devstack run

seed: uv
	$(SYNC)
	$(UV) run --frozen python -m taskflow_devstack.seed

migrate: uv
	$(SYNC)
	$(UV) run --frozen python -m taskflow_devstack migrate

test: uv
	$(SYNC)
	$(UV) run --frozen pytest

# The services without a database, each in its own environment with only what it declares (no
# `taskflow-kit[db]`: SQLAlchemy, asyncpg and Alembic are not installed there).
ISOLATED_TEST := --frozen --isolated --no-dev --with pytest --with pytest-asyncio --with pytest-timeout --with respx --with hypothesis
test-without-db: uv
	$(UV) run $(ISOLATED_TEST) --package stats-service pytest -p no:cacheprovider stats-service/tests --ignore=stats-service/tests/integration
	$(UV) run $(ISOLATED_TEST) --package api-gateway pytest -p no:cacheprovider api-gateway/tests

test-compose: uv
	$(SYNC)
	UV=$(UV) bash tests/compose/run.sh

lint: uv
	$(SYNC)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	@# Every package declares what it imports (and nothing it does not), each against its own pyproject
	for package in $(PACKAGES); do $(UV) run --frozen deptry --config $$package/pyproject.toml $$package || exit 1; done
	@# Deployment files against their schemas and rules (every schema ships in its package: offline)
	$(UV) run --frozen check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(UV) run --frozen check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(UV) run --frozen hadolint Dockerfile
	$(UV) run --frozen kubernetes-validate --strict --quiet deploy/k8s/*/*.yaml

# Every locked package (hashes included, workspace members left out) against the PyPI advisory
# database. Online by nature, so separate from `make test`; --strict fails when a package
# cannot be checked instead of passing it silently.
audit: uv
	$(SYNC)
	@mkdir -p .tools
	$(UV) export --frozen --all-packages --no-emit-workspace --format requirements-txt --quiet --output-file .tools/audit-requirements.txt
	$(UV) run --frozen pip-audit --strict --disable-pip --progress-spinner off --requirement .tools/audit-requirements.txt

fmt: uv
	$(SYNC)
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

BENCH_COMPARE := $(if $(COMPARE),--compare $(COMPARE))

bench: uv
	$(SYNC)
	$(UV) run --frozen python bench/suite_bench.py $(BENCH_COMPARE)

bench-full: uv
	$(SYNC)
	$(UV) run --frozen python bench/suite_bench.py --full $(BENCH_COMPARE)

bench-gateway: uv
	$(SYNC)
	$(UV) run --frozen python bench/gateway_bench.py $(BENCH_COMPARE) $(if $(INSTRUCTIONS),--instructions)

bench-size: uv
	$(SYNC)
	$(UV) run --frozen python bench/size_bench.py

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
