# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint typecheck unit wheel-check system-deps bench clean

run: $(STAMP)
	$(BIN)/callsd serve

test: $(STAMP) system-deps lint typecheck unit wheel-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,loadtest]'
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	bash scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict  # core, adapters and app, through typecheck/callsd (see [tool.mypy] in pyproject.toml)

unit: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -q -ra

wheel-check: $(STAMP)
	bash scripts/wheel-check.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench.forward

clean:
	rm -rf $(VENV) build dist *.egg-info
