"""`python -m bench.egress_floor` builds its C forwarder and runs it against its sink: every talker's packet must reach
the call's other seven receivers, sealed and opened (no packet refused by the cipher), so the floor quoted in
docs/performance.md stays a forwarder that really forwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_floor_forwarder_delivers_every_copy() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.egress_floor", "--calls", "2", "--seconds", "0.6",
                           "--warmup", "0.2", "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert [(run["calls"], run["crypto"]) for run in runs] == [(2, 1), (2, 0)]
    for run in runs:
        assert run["bad"] == 0 and run["send_fail"] == 0
        assert run["egress"] == 7 * run["ingress"] > 0  # two talkers per call, each to the other seven users
        assert run["sink_received"] == run["egress_total"]  # every copy the forwarder sent arrived
        assert run["us_per_egress_packet"] > 0
