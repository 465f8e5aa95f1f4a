# The two commands a new user needs; each sets up what is missing first (scripts/setup.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= experiment=ablation_aesthetic

.PHONY: setup demo test lint
setup:
	scripts/setup.sh

demo:
	scripts/setup.sh --lib
	$(PY) run.py $(DEMO)

# pytest's exit code 5 means no test ran: that is a failure too.
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q; code=$$?; [ $$code -eq 5 ] && echo "pytest collected no tests"; exit $$code

lint: setup
	$(PY) -m ruff check .
