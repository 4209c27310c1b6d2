"""bench/peers against the real Janus: the VideoRoom driver on the load tool's media engine gets audio through.

``python -m bench.peers --smoke`` starts Debian's Janus (installed by scripts/system-deps.sh, or by the bench
itself; a missing or broken Janus fails here, it is never skipped) in a network namespace of its own, as in the
side-by-side bench, with one room of 3 users of which 2 publish Opus-sized audio, every received packet
decrypted. What a user would observe: each publisher hears the other and the listener hears both, every packet
carries its sender's stamp (SRTP authenticated, payload intact), and nobody failed to connect. No timing is
asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A real server and peers in namespaces: the real-peer group (one worker, one retry; tests/conftest.py).
pytestmark = pytest.mark.net

ROOT = Path(__file__).resolve().parents[2]


def test_videoroom_driver_gets_audio_both_ways_through_janus() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.peers", "--smoke", "6"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["failed"] == 0, result["errors"]
    assert result["legs_connected"] == result["legs_expected"] == 5, result["leg_states"]
    # users 0 and 1 publish: each hears the other (audio flows both ways), user 2 hears both
    assert result["heard"] == {"0": [1], "1": [0], "2": [0, 1]}, result["heard"]
    counters = result["counters"]
    assert counters["srtp_errors"] == 0, counters
    # every received packet was decrypted (delay sample 1) and its stamp read: 4 streams, at least 2 s of audio each
    assert counters["e2e_expected"] >= 4 * 100, counters
    assert counters["received"] >= 4 * 100, counters
    assert result["srtp_profiles"], "no leg negotiated SRTP"
