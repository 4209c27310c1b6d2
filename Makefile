# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint typecheck unit wheel-check system-deps bench clean test-net diagrams fuzz fuzz-python fuzz-native image

run: $(STAMP)
	$(BIN)/callsd serve

test: $(STAMP) system-deps lint typecheck unit wheel-check

$(STAMP): pyproject.toml setup.py $(wildcard adapters/media/native/*.c adapters/media/native/*.h peer/*.c peer/*.h)
	bash scripts/system-deps.sh build  # the native extension builds against libssl-dev (libcrypto)
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

# Two workers: the real-peer tests (Chromium, namespaces) in one group on one worker, the rest on both (tests/conftest.py).
PYTEST_WORKERS ?= 2
unit: $(STAMP) system-deps
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(BIN)/pytest -q -raR --durations=25 -n $(PYTEST_WORKERS) --dist loadgroup

# The networking tests alone (namespaces, NAT, coturn; root): also part of `unit`, hence of `make test`.
test-net: $(STAMP) system-deps
	$(BIN)/pytest -q -ra -m net tests/net

# docs/{networking,rtcd,cluster,deployment}/*.png from the .dot sources next to them (Graphviz, from scripts/system-deps.sh)
diagrams: system-deps
	for f in docs/networking/*.dot docs/rtcd/*.dot docs/cluster/*.dot docs/deployment/*.dot; do dot -Tpng -Gdpi=90 "$$f" -o "$${f%.dot}.png"; done

wheel-check: $(STAMP)
	bash scripts/wheel-check.sh $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench.forward

# Issue 13: capacity on both forwarding paths across loads, plotted to docs/capacity-paths.png (minutes; needs a
# quiet machine for absolute figures), the step's A/B (Python / native), the
# UDP GSO probe and the load tool's own cost per packet on each media engine.
.PHONY: bench-capacity-paths bench-step bench-gso bench-client-cost
bench-capacity-paths: $(STAMP)
	$(BIN)/python -m bench.capacity_paths --media-engine shared --join-timeout 45
# the same per-packet figure as two hosts would see it, alternated with loopback (ADR 0049; needs root and ethtool)
.PHONY: bench-two-hosts
bench-two-hosts: $(STAMP)
	$(BIN)/python -m bench.capacity_paths --calls 150,200 --paths native --topology loopback,two-hosts \
		--media-engine native --rounds 2 --steady 10 --join-timeout 45 --png docs/capacity-two-hosts.png
bench-step: $(STAMP)
	$(BIN)/python -m bench.forward_step --receivers 7
bench-gso: $(STAMP)
	$(BIN)/python -m bench.gso_probe
bench-client-cost: $(STAMP)
	$(BIN)/python -m bench.capacity --client-cost

# Issue 13: the load tool's CPU per packet sent + received in the capacity shape, every media engine alternated in
# one run (bench/loadtool_cost.py), and its user-space instructions per packet under callgrind (bench/loadtool_step.py).
.PHONY: bench-loadtool-cost
bench-loadtool-cost: $(STAMP)
	$(BIN)/python -m bench.loadtool_cost
	$(BIN)/python -m bench.loadtool_step --callgrind

# Issue 13: packets per core, each load-tool engine at its own saturation on one pinned core (a quarter of it: this
# 2-CPU host's stand-in cannot feed a full core of the native engine; bench/loadtool_saturate.py says why).
.PHONY: bench-loadtool-saturate
bench-loadtool-saturate: $(STAMP)
	$(BIN)/python -m bench.loadtool_cost --saturate --engines python,shared --tool-quota 0.25 --stand-in-cpu -1 \
		--stand-in-gso

# Long coverage-guided fuzz runs, `make test` runs the same for seconds:
# - fuzz-python: every Python parser facing the network or disk (fuzz/run.py, atheris); FUZZ_SECONDS per target, new
#   inputs to .fuzz/<target>, crashers to .fuzz/crash-<target>-* (tests/fuzz/test_fuzz_bounded.py is the short run);
# - fuzz-native: the native fast path's C parser (libFuzzer + ASan/UBSan, scripts/fuzz-native.sh).
FUZZ_SECONDS ?= 300
FUZZ_EXAMPLES ?= 500
FUZZ_TARGETS ?= stun dtls rtp rtcp sdp signaling eventlog checkpoint negotiation candidate token rtcd http_inbound

fuzz: fuzz-python fuzz-native

fuzz-python: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		$(BIN)/python fuzz/run.py $$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 \
			-artifact_prefix=.fuzz/crash-$$t- .fuzz/$$t fuzz/corpus/$$t || exit 1; \
	done

fuzz-native: $(STAMP) system-deps
	PYTHON=$(BIN)/python bash scripts/fuzz-native.sh $(FUZZ_SECONDS) $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) build dist *.egg-info

# The container image (deploy/container/Containerfile; root): a debootstrap'd Debian rootfs with the callsd wheel built
# inside it, committed by buildah; build/image/callsd-image.oci.tar and image.env (size, build time). The base rootfs
# is cached in ~/.cache/callsd-image, so only the first build runs debootstrap. docs/deployment-image.md.
# With .venv present (make test made it) the image's dependencies are pinned to the versions the suite ran.
image:
	bash scripts/system-deps.sh image
	PYTHON=$(BIN)/python bash scripts/build-image.sh

# docs/adr/0053: core/ compiled by mypyc (CALLSD_MYPYC=1 at build time; the default build keeps it Python). The
# core-facing tests on a compiled copy of this checkout (scripts/test-compiled.sh: ~1.5 min of build on 2 CPUs, then
# tests/core, property_tests and tests/media's in-process tests); not part of `make test`, since nothing ships
# compiled. clean-compiled removes what `CALLSD_MYPYC=1 setup.py build_ext --inplace` leaves in core/ (a .so there
# shadows its .py: edits to the source would not run).
.PHONY: test-compiled clean-compiled
test-compiled: $(STAMP)
	bash scripts/test-compiled.sh $(BIN)/python
clean-compiled:
	find core -name '*.so' -delete
