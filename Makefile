VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install redis chromium faketime demo test lint typecheck format all

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test,lint]"
	touch $@

redis:
	bash .ci/ensure-redis

chromium:
	bash .ci/ensure-chromium

faketime:
	bash .ci/ensure-faketime

demo: install redis
	$(PY) -m pipelines._demo

# The suite starts a few hundred Python processes (consumers, commands, servers): each
# reads compiled modules from one cache outside the source tree, even where
# PYTHONDONTWRITEBYTECODE is set (without it, each compiled every module again).
PYCACHE := $(CURDIR)/.pytest_cache/pycache

test: install redis chromium faketime
	env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(PYCACHE) $(PY) -m pytest -n 5 --dist loadgroup

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .

all: lint typecheck test
