# feedstock: `make run` starts Airflow with the sample data configured; `make test` runs the suite.
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The Airflow instance (airflow.cfg, metadata DB, pools, the sample connection) is written by
# include/setup_airflow.py, so a shell with only AIRFLOW_HOME set sees what `make run` sees.
export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
AIRFLOW_STAMP := $(AIRFLOW_HOME)/.feedstock-setup
# Read only from the environment, never from airflow.cfg: a second guard against telemetry and model downloads
# (dbt's telemetry is off in dbt_project.yml, cosmos' in airflow.cfg, and the models load from local folders).
export SCARF_ANALYTICS := false
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PATH := $(BIN):$(PATH)

.PHONY: setup run serve test bench lint clean

setup: $(STAMP) data/warehouse.sqlite $(AIRFLOW_STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt -e .
	$(BIN)/pip check
	touch $@

# The sample warehouse: a SQLite file built from the portable seed script.
data/warehouse.sqlite: include/sample_data/warehouse/seed.sql | $(STAMP)
	mkdir -p data
	$(BIN)/python include/sample_data/warehouse/build_seed.py $@

# airflow.cfg, the migrated DB, pools, warehouse_default, the serialized DAGs; again when the script changes.
$(AIRFLOW_STAMP): include/setup_airflow.py | $(STAMP)
	$(BIN)/python include/setup_airflow.py "$(AIRFLOW_HOME)"
	touch $@

run: setup
	$(BIN)/airflow standalone

serve: setup
	$(BIN)/feedstock serve

# The browser test's Chromium, from Debian's packages (tests/integration/test_ui.py is skipped without it).
CHROMIUM := /usr/bin/chromium

test: setup $(CHROMIUM)
	$(BIN)/pytest

$(CHROMIUM):
	apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "warning: Chromium could not be installed; the browser test will be skipped"

bench: setup
	$(BIN)/python -m benchmarks

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf data airflow_home
