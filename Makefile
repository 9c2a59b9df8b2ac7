# feedstock: `make run` starts Airflow with the sample data configured; `make test` runs the suite.
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Everything Airflow, dbt and cosmos need, and no telemetry from any of them.
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := False
export AIRFLOW__USAGE_DATA_COLLECTION__ENABLED := False
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export SCARF_ANALYTICS := false
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export FEEDSTOCK_CONFIG ?= $(CURDIR)/include/config/feedstock.yaml
export AIRFLOW_CONN_WAREHOUSE_DEFAULT ?= sqlite:///$(CURDIR)/data/warehouse.sqlite
export PATH := $(BIN):$(PATH)

.PHONY: setup run test bench lint clean

setup: $(STAMP) data/warehouse.sqlite

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt -e .
	$(BIN)/pip check
	touch $@

# The sample warehouse: a SQLite file built from the portable seed script.
data/warehouse.sqlite: include/sample_data/warehouse/seed.sql | $(STAMP)
	mkdir -p data
	$(BIN)/python include/sample_data/warehouse/build_seed.py $@

run: setup
	$(BIN)/airflow db migrate
	$(BIN)/airflow pools set feedstock_duckdb 1 "dbt tasks: one DuckDB writer at a time"
	$(BIN)/airflow pools set feedstock_pretrain_release 1 "pretraining releases: one at a time"
	$(BIN)/airflow standalone

test: setup
	$(BIN)/pytest

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf data airflow_home
