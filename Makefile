# ct-lakehouse: the two commands of the README, plus setup.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

export MLFLOW_DISABLE_TELEMETRY ?= true
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: setup demo test lint bench bench-lake dagster mlflow viewer

setup: $(VENV)/.installed

# torch is pinned to 2.13.0 in pyproject.toml: pip takes the local CPU wheel for it.
$(VENV)/.installed: pyproject.toml scripts/ensure_browser.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	bash scripts/ensure_browser.sh
	touch $@

demo: setup
	$(BIN)/ct demo --verbose
	$(BIN)/ct materialize --golden

# Retrain the toy world's transcoders (toy-world-plt, toy-world-clt) in place, with their
# shipped settings (ct_engine/toyworld/MODEL_CARD.md, "Reproducing").
.PHONY: toy-world-transcoders
toy-world-transcoders: setup
	$(BIN)/python -m ct_engine.toyworld.train_transcoders

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# The viewer's browser tests must run, not skip: Debian's chromium is installed when missing.
# Two workers: much of the suite waits on subprocesses and servers (tests/conftest.py).
test: lint
	bash scripts/ensure_browser.sh
	bash scripts/ensure_redis.sh
	CT_REQUIRE_BROWSER=1 $(BIN)/pytest -n 2 --dist loadgroup

# The graph viewer on http://127.0.0.1:8041 (graphs of the lake, annotations, steering).
viewer: setup
	$(BIN)/ct serve

# The Dagster UI (webserver + daemon) and the MLflow UI, both on 127.0.0.1 only. The workspace
# names the code location as pyproject.toml's [tool.dg.project] does (a location served under
# another name logs a warning on every reload). `dagster dev` warns that `dg dev` supersedes
# it; that CLI is another package (dagster-dg-cli) we do not install.
dagster: setup
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded:FutureWarning' \
		$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w dagster_home/workspace.yaml

mlflow: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 --port 5000 \
		--backend-store-uri sqlite:///$(CURDIR)/dagster_home/mlflow.db \
		--default-artifact-root $(CURDIR)/dagster_home/mlartifacts

# The team profile's services on 127.0.0.1 (PostgreSQL, Redis, S3, MLflow, Celery workers,
# Dagster), state in .services/; then `set -a; source .services/team.env; set +a`.
.PHONY: services services-down services-status
services: setup
	bash scripts/ensure_redis.sh
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

services-status:
	bash scripts/services.sh status

# The side-by-side runs circuit-tracer 0.5.0 from its own venv: benchmarks/setup_reference.sh.
bench: setup
	$(BIN)/python benchmarks/bench_prune.py
	$(BIN)/python benchmarks/make_bench_model.py
	$(BIN)/python benchmarks/bench_attribution.py --repeats 2
	$(BIN)/python benchmarks/bench_lakehouse.py
	$(BIN)/python benchmarks/bench_viewer.py
	$(BIN)/python benchmarks/bench_cli.py
	$(MAKE) bench-lake

# Delta versus Iceberg (the bench extra brings pyiceberg), then the lake on Delta at 1,000 graphs.
bench-lake: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	nice -n 10 $(BIN)/python benchmarks/bench_table_formats.py
	nice -n 10 $(BIN)/python benchmarks/bench_lake.py
