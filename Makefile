# Corral: the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DJANGO_SETTINGS_MODULE := portal.settings

.PHONY: run test deps dev-deps services kube-tools lint migrate clean

$(VENV)/.deps-run: requirements.txt
	bash tools/bootstrap.sh run
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.deps-dev: $(VENV)/.deps-run requirements-dev.txt
	bash tools/bootstrap.sh test
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

deps: $(VENV)/.deps-run
dev-deps: $(VENV)/.deps-dev

# Start web, worker, beat and watcher on http://127.0.0.1:8000 with a private PostgreSQL (durable,
# var/postgres-durable) and a private Redis (append-only file, var/redis), unless
# PORTAL_DATABASE_URL / PORTAL_REDIS_URL say otherwise; var/ is $CORRAL_VAR_DIR when set.  A process
# that dies is started again; Ctrl-C stops them and the private PostgreSQL and Redis it started.
# Local mode (PORTAL_DEBUG unset): no debug pages, secret and encryption keys generated under var/
# on first start; what it writes is private.
run: deps
	@set -e; var="$${CORRAL_VAR_DIR:-var}"; mkdir -p "$$var"; export CORRAL_VAR_DIR="$$(cd "$$var" && pwd)"; var="$$CORRAL_VAR_DIR"; \
	stops=""; if [ -z "$$PORTAL_DATABASE_URL" ]; then \
	  if [ -f "$$var/corral.sqlite3" ] && [ ! -d "$$var/postgres-durable" ]; then \
	    echo "note: make run now keeps its data in a private PostgreSQL; $$var/corral.sqlite3 is left as it was" \
	         "(to keep using it: PORTAL_DATABASE_URL=sqlite:///$$var/corral.sqlite3 make run)"; fi; \
	  db=$$($(PY) -m tools.services up --durable postgres); eval "$$db"; stops="postgres-durable"; fi; \
	if [ -z "$$PORTAL_REDIS_URL" ]; then broker=$$($(PY) -m tools.services up redis); eval "$$broker"; stops="$$stops redis"; fi; \
	export CORRAL_RUN_STOPS="$$stops"; \
	umask 077; if [ -f "$$var/corral.sqlite3" ]; then chmod go-rwx "$$var/corral.sqlite3"; fi; \
	$(PY) manage.py migrate --noinput && \
	$(PY) manage.py reencrypt_credentials && \
	$(PY) manage.py ensureadmin --password-file "$$var/admin-password" && \
	$(PY) manage.py collectstatic --noinput -v0 && \
	exec $(PY) tools/run.py

# The whole test suite on real PostgreSQL and Redis (started under var/ unless given).
test: export PORTAL_DB_CONN_MAX_AGE ?= 0
test: dev-deps
	@mkdir -p "$${CORRAL_VAR_DIR:-var}"
	@if [ -z "$$PORTAL_DATABASE_URL" ]; then eval "$$($(PY) -m tools.services up postgres)"; fi; \
	if [ -z "$$PORTAL_REDIS_URL" ]; then eval "$$($(PY) -m tools.services up redis)"; fi; \
	set -e; \
	$(PY) -m ruff check . ; \
	$(PY) manage.py makemigrations --check --dry-run >/dev/null || { echo "models changed without a migration: run manage.py makemigrations"; exit 1; }; \
	PORTAL_DEBUG=false PORTAL_SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))') PORTAL_ALLOWED_HOSTS=corral.example.com \
	  $(PY) manage.py check --deploy --fail-level WARNING; \
	$(PY) manage.py collectstatic --noinput -v0; \
	$(PY) -m pytest $(PYTEST_ARGS)

# Build the pinned Kubernetes control plane, etcd and kwok into ~/.cache/corral/kube (no-op when built),
# then the add-ons; progress (which binary, N of M, elapsed) on the terminal, the whole output in
# $CORRAL_VAR_DIR/kube-tools.log.
kube-tools:
	$(PYTHON) tools/kube/progress.py

services: deps
	$(PY) -m tools.services up postgres redis

lint: dev-deps
	$(PY) -m ruff check .

migrate: deps
	$(PY) manage.py migrate

clean:
	-$(PY) -m tools.services down
	rm -rf var staticfiles
