#!/usr/bin/env bash
# Builds the wheel, installs it into a fresh venv and checks that the namespaced imports and the CLI work from it
# (the editable install maps folders differently, so both must be proven; docs/adr/0003).
set -euo pipefail
python=${1:-python3}
case $python in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac  # we cd below
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m build --wheel --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/callsd-*.whl
cd "$work"
"$work/venv/bin/python" -c "import callsd.core, callsd.adapters, callsd.app.cli, callsd.peer; print('wheel imports ok:', callsd.core.__file__)"
"$work/venv/bin/callsd" --help >/dev/null
"$work/venv/bin/python" -c "from callsd.adapters.media.paths import native_available as n; assert n() is None, n()"
echo "wheel-check: the native fast path's extension is in the wheel and imports"
"$work/venv/bin/python" -c "from callsd.peer.engine import resolve_media as r; assert r('auto') == 'native', r('auto')"
echo "wheel-check: the load tool's native media engine (callsd.peer._fastpeer) is in the wheel and imports"
echo "wheel-check: callsd --help runs from the installed wheel"
# PEP 561: the wheel ships py.typed, so `mypy --strict` of a program that embeds callsd.core resolves our types
# (without it: import-untyped). Run from $work, away from the repository's [tool.mypy] settings.
cat >"$work/embed.py" <<'PY'
from callsd.core import CallFact, CallsMachine, JoinCall

machine = CallsMachine()
outputs = machine.handle(JoinCall(at=0, channel_id="c", session_id="s", user_id="u", call_id="k"))
facts: list[CallFact] = [o for o in outputs if isinstance(o, CallFact)]
channels: list[str] = [f.channel_id for f in facts]
PY
"$python" -m mypy --strict --no-incremental --python-executable "$work/venv/bin/python" "$work/embed.py"
echo "wheel-check: mypy --strict resolves callsd.core's types from the installed wheel"
"$work/venv/bin/python" - <<'PY'
from importlib.resources import files
static = files("callsd.app.static")
client = ("index.html", "style.css", "app.js", "session.js", "media.js", "devices.js", "controls.js", "render.js",
          "names.js", "state.js")
missing = [n for n in client if not static.joinpath(n).is_file()]
assert not missing, f"the wheel lacks the browser client files: {missing}"
print("wheel-check: the browser client's files are in the wheel")
assert files("callsd.app").joinpath("rtcd_openapi.json").is_file(), "the wheel lacks app/rtcd_openapi.json"
print("wheel-check: the rtcd OpenAPI document is in the wheel")
PY
# The installed wheel must serve the page, not only import: start it on free loopback ports and fetch / and /healthz.
http_port=$("$work/venv/bin/python" -c "
import socket
t = socket.socket(); t.bind(('127.0.0.1', 0)); print(t.getsockname()[1])")
# RTC port 0: the server picks a free UDP port (ice_port_udp accepts 80-49151, or 0); ICE-TCP off (its default 8443
# would collide with another server on this machine).
CALLSD_HTTP_PORT=$http_port CALLSD_RTC_ICE_PORT_UDP=0 CALLSD_RTC_ICE_PORT_TCP=0 CALLSD_STORE_DATA_DIR="$work/data" \
    "$work/venv/bin/callsd" serve >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
"$work/venv/bin/python" - "$http_port" <<'PY' || { cat "$work/serve.log"; exit 1; }
import sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 30
while True:
    try:
        health = urllib.request.urlopen(base + "/healthz", timeout=2).status
        page = urllib.request.urlopen(base + "/", timeout=2).read().decode()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("wheel-check: the installed server did not answer within 30 s")
        time.sleep(0.2)
assert health == 200 and "callsd" in page, (health, page[:200])
print("wheel-check: the installed wheel serves / and /healthz")
PY
kill -TERM $server; wait $server || true
