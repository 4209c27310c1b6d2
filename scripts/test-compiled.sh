#!/usr/bin/env bash
# core/ compiled by mypyc (CALLSD_MYPYC=1, docs/adr/0053), tested: a copy of this checkout (tracked and untracked
# files, no build products) is built in place with core/ compiled, and the core-facing tests run on it: tests/core,
# property_tests and tests/media's in-process tests (not the browser, slow or namespace ones), with
# CALLSD_EXPECT_COMPILED=1 so tests/core/test_core_build.py proves the compiled modules are the ones that ran. This
# checkout's own core/ stays Python source: nothing is built here.
#   scripts/test-compiled.sh PYTHON [PYTEST ARGS...]
set -euo pipefail
python=${1:-python3}
shift || true
case $python in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac  # we cd below
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tree" "$work/shim"
(cd "$here" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$work/tree"
start=$(date +%s)
(cd "$work/tree" && CALLSD_MYPYC=1 "$python" setup.py -q build_ext --inplace >"$work/build.log" 2>&1) \
    || { cat "$work/build.log"; exit 1; }
echo "test-compiled: core/ compiled with mypyc and the C extensions built in $(( $(date +%s) - start )) s"
ln -s "$work/tree" "$work/shim/callsd"  # first on PYTHONPATH: wins over the editable install (bench/joins.py)
cd "$work/tree"
PYTHONPATH="$work/shim" CALLSD_EXPECT_COMPILED=1 HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-dev} \
    "$python" -m pytest -q -p no:randomly -m "not browser and not slow and not net" \
    tests/core property_tests tests/media "$@"
