# Two entry points: `make run` (the workflow on the embedded default) and `make test`.
# Both create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: run test lint report clean status lock locked

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/snakemake --cores $(CORES)

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# Formatting (snakefmt, config in pyproject.toml), lint (ruff; snakemake --lint), dead code (vulture).
lint: $(BIN)/.installed
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/ruff check .
	$(BIN)/vulture
	$(BIN)/snakemake --lint

report: run
	$(BIN)/snakemake --report results/report.html

# Where a long run stands (README.md, "Seeing a long run"), also while another Snakemake runs the
# grid: --nolock, and only the status rule runs. Give the grid's options in ARGS, e.g.
#   make status ARGS="--configfile config/paper.yaml"
# Order-only: an edited pyproject.toml does not reinstall the environment under a running grid.
status: | $(BIN)/.installed
	$(BIN)/snakemake status --nolock --force --cores 1 --quiet host progress rules reason $(ARGS)

# The tested environment, exact versions (envs/requirements.lock.txt), for a reproducible rerun
# of published results: `make locked` builds $(VENV) from the lock (VENV=... for another folder),
# then installs the project itself without dependencies; `make lock` rewrites the lock from
# $(VENV) (after a deliberate upgrade; tests/test_environment.py checks it against pyproject.toml).
locked:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r envs/requirements.lock.txt
	$(BIN)/python -m pip install --no-deps -e .
	touch $(BIN)/.installed

lock: $(BIN)/.installed
	$(BIN)/python envs/lock.py

clean:
	rm -rf results .snakemake
