# The few commands people run. Each target sets up .venv itself on a fresh machine;
# re-running skips what is done (the stamp file tracks the requirement files).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torchvision wheels on PyPI are built against PyPI's torch; a machine-wide pip "find-links"
# offering a CPU-only torch wheel would pair the two wrongly (torchvision then fails to
# import), so pip runs without machine-wide configuration here.
PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(PY) -m pip
DEMO_ROOT ?= data/synthetic

.PHONY: setup test test-all lint format demo clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade --quiet pip
	$(PIP) install --quiet -c constraints.txt -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

demo: $(STAMP)
	$(PY) -m scripts.demo --out $(DEMO_ROOT)

clean-venv:
	rm -rf $(VENV)
