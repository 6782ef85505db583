# Dockyard: `make demo` brings it up and drives a sample repository through the pipeline;
# `make test` runs the whole suite against real services. Both install what they need.
SHELL := /bin/bash
PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

# Dockyard's Redis and registry want logins; scripts/services.sh makes their passwords.
SECRETS := /var/lib/dockyard/secrets
SERVICES_ENV := DOCKYARD_REDIS_PASSWORD_FILE=$(SECRETS)/redis-password \
	DOCKYARD_SECRET_KEY_FILE=$(SECRETS)/secret-key \
	DOCKYARD_REGISTRY_USERNAME=dockyard \
	DOCKYARD_REGISTRY_PASSWORD_FILE=$(SECRETS)/registry-password
RUN_ENV := REDIS_URL=redis://127.0.0.1:6380/0 $(SERVICES_ENV) DOCKYARD_ALLOW_LOCAL_REPOSITORIES=true
# The suite's own Redis database, data folder (HAProxy included) and ports, apart from
# `make up`'s.
TEST_ENV := DATABASE_URL=postgres://dockyard:dockyard@127.0.0.1:5432/dockyard \
	REDIS_URL=redis://127.0.0.1:6380/14 $(SERVICES_ENV) \
	DOCKYARD_DATA_DIR=$(CURDIR)/data/test \
	DOCKYARD_FRONTEND_PORTS=19100-19199 \
	DOCKYARD_SLOT_PORTS=19200-19399 \
	DOCKYARD_ALLOW_LOCAL_REPOSITORIES=true

.PHONY: up down demo test lint system services hosts bench-pipeline bench-webhooks bench-deploy bench-history \
	bench-soak bench-fleet

$(VENV)/.installed: pyproject.toml
	scripts/system-packages.sh
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

system:
	scripts/system-packages.sh

services: system
	scripts/services.sh

# Three more hosts on loopback (an engine and an sshd each), for the fleet tests and benchmark.
hosts: system
	scripts/hosts.sh up

up: $(VENV)/.installed services
	PORT=$(PORT) $(RUN_ENV) scripts/up.sh

down:
	scripts/down.sh

demo: up
	$(RUN_ENV) $(PY) manage.py demo --server http://127.0.0.1:$(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(VENV)/.installed services hosts lint
	node --test tests/js/
	$(TEST_ENV) $(VENV)/bin/pytest $(ARGS)

bench-pipeline: up
	$(RUN_ENV) $(PY) bench/pipeline.py

bench-webhooks: up
	$(RUN_ENV) $(PY) bench/webhooks.py

bench-deploy: up
	$(RUN_ENV) $(PY) bench/deploy.py

bench-soak: up
	$(RUN_ENV) $(PY) bench/soak.py

# Its own PostgreSQL database, loaded with 50,000 runs of history.
bench-history: $(VENV)/.installed services
	runuser -u postgres -- psql -qtAc "select 1 from pg_database where datname = 'dockyard_history'" \
		| grep -q 1 || runuser -u postgres -- createdb -O dockyard dockyard_history
	DATABASE_URL=postgres://dockyard:dockyard@127.0.0.1:5432/dockyard_history \
		REDIS_URL=redis://127.0.0.1:6380/10 $(SERVICES_ENV) DOCKYARD_DATA_DIR=$(CURDIR)/data/bench-history \
		$(PY) bench/history.py

# Its own PostgreSQL database, Redis database and data folder; its own workers on the hosts.
bench-fleet: $(VENV)/.installed services hosts
	runuser -u postgres -- psql -qtAc "select 1 from pg_database where datname = 'dockyard_bench'" \
		| grep -q 1 || runuser -u postgres -- createdb -O dockyard dockyard_bench
	DATABASE_URL=postgres://dockyard:dockyard@127.0.0.1:5432/dockyard_bench \
		REDIS_URL=redis://127.0.0.1:6380/12 $(SERVICES_ENV) \
		DOCKYARD_DATA_DIR=$(CURDIR)/data/bench-fleet DOCKYARD_ALLOW_LOCAL_REPOSITORIES=true \
		$(PY) bench/fleet.py
