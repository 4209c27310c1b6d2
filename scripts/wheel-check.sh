#!/usr/bin/env bash
# Builds the wheel, installs it into a fresh venv and checks that the namespaced imports and the CLI work from it
# (the editable install maps folders differently, so both must be proven; docs/adr/0003).
set -euo pipefail
python=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m build --wheel --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/callsd-*.whl
cd "$work"
"$work/venv/bin/python" -c "import callsd.core, callsd.adapters, callsd.app.cli; print('wheel imports ok:', callsd.core.__file__)"
"$work/venv/bin/callsd" --help >/dev/null
echo "wheel-check: callsd --help runs from the installed wheel"
