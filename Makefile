# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint typecheck unit wheel-check system-deps bench clean fuzz

run: $(STAMP)
	$(BIN)/callsd serve

test: $(STAMP) system-deps lint typecheck unit wheel-check

$(STAMP): pyproject.toml setup.py $(wildcard adapters/media/native/*.c adapters/media/native/*.h)
	bash scripts/system-deps.sh  # the native extension builds against libsrtp2-dev
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
	$(BIN)/mypy --strict core

unit: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -q -ra

wheel-check: $(STAMP)
	bash scripts/wheel-check.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench.forward

clean:
	rm -rf $(VENV) build dist *.egg-info

# Long fuzz run of the native fast path (libFuzzer + ASan/UBSan; `make test` runs a bounded one).
FUZZ_SECONDS ?= 600
FUZZ_EXAMPLES ?= 500
fuzz: $(STAMP) system-deps
	PYTHON=$(BIN)/python bash scripts/fuzz-native.sh $(FUZZ_SECONDS) $(FUZZ_EXAMPLES)
