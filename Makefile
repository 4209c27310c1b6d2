# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint typecheck unit wheel-check system-deps bench clean fuzz

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
	$(BIN)/mypy --strict core

unit: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -q -ra

wheel-check: $(STAMP)
	bash scripts/wheel-check.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench.forward

# Long coverage-guided fuzz runs (fuzz/run.py): FUZZ_SECONDS per target; new inputs go to .fuzz/<target>, crashers
# to .fuzz/crash-<target>-*. `make test` runs the same targets for seconds (tests/fuzz/test_fuzz_bounded.py).
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= stun dtls rtp rtcp sdp signaling eventlog checkpoint negotiation candidate token

fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		$(BIN)/python fuzz/run.py $$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
			-artifact_prefix=.fuzz/crash-$$t- .fuzz/$$t fuzz/corpus/$$t || exit 1; \
	done

clean:
	rm -rf $(VENV) build dist *.egg-info
