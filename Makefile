# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint typecheck unit wheel-check system-deps bench clean test-net diagrams fuzz

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
	$(BIN)/mypy --strict  # core, adapters and app, through typecheck/callsd (see [tool.mypy] in pyproject.toml)

unit: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -q -ra

# The networking tests alone (namespaces, NAT, coturn; root): also part of `unit`, hence of `make test`.
test-net: $(STAMP) system-deps
	$(BIN)/pytest -q -ra -m net tests/net

# docs/networking/*.png and docs/rtcd/*.png from the .dot sources next to them (Graphviz, from scripts/system-deps.sh)
diagrams: system-deps
	for f in docs/networking/*.dot docs/rtcd/*.dot; do dot -Tpng -Gdpi=90 "$$f" -o "$${f%.dot}.png"; done

wheel-check: $(STAMP)
	bash scripts/wheel-check.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench.forward

# Long coverage-guided fuzz runs (fuzz/run.py): FUZZ_SECONDS per target; new inputs go to .fuzz/<target>, crashers
# to .fuzz/crash-<target>-*. `make test` runs the same targets for seconds (tests/fuzz/test_fuzz_bounded.py).
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= stun dtls rtp rtcp sdp signaling eventlog checkpoint

fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		$(BIN)/python fuzz/run.py $$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
			-artifact_prefix=.fuzz/crash-$$t- .fuzz/$$t fuzz/corpus/$$t || exit 1; \
	done

clean:
	rm -rf $(VENV) build dist *.egg-info

# Long fuzz run of the native fast path (libFuzzer + ASan/UBSan; `make test` runs a bounded one).
FUZZ_SECONDS ?= 600
FUZZ_EXAMPLES ?= 500
fuzz: $(STAMP) system-deps
	PYTHON=$(BIN)/python bash scripts/fuzz-native.sh $(FUZZ_SECONDS) $(FUZZ_EXAMPLES)
