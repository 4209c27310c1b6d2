"""`python -m bench.loadtool_cost` and `python -m bench.loadtool_idle` on a tiny shape: the stand-in server's
prepared ``sendmmsg`` batches reach the tool's users (every packet of the window is received, 1 in
``--delay-sample`` verified) and the idle bench measures both ways, so a change of the engine's or the worker's
interface cannot break the benches behind docs/performance.md's load-tool figures unnoticed. No figure is
asserted: speed lives in the benches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loadtool_cost_stand_in_delivers_to_every_user(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    proc = subprocess.run([sys.executable, "-m", "bench.loadtool_cost", "--calls", "2", "--seconds", "0.5",
                           "--rounds", "1", "--engines", "shared,python@2", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(out.read_text())["runs"]
    for spec, (row,) in runs.items():
        assert row["stand_in"]["send_failed"] == 0, spec
        assert row["received"] > 0 and row["sent"] > 0, (spec, row)
        assert row["srtp_errors"] == 0, (spec, row)
        assert row["verified"] > 0, (spec, row)
    assert runs["python@2"][0]["delay_sample"] == 2


def test_loadtool_idle_measures_both_waits(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    proc = subprocess.run([sys.executable, "-m", "bench.loadtool_idle", "--users", "20", "--seconds", "0.3",
                           "--rounds", "1", "--message-interval", "0.1", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {"deadline", "scope"}
    for way, (row,) in runs.items():
        assert row["messages"] > 0, (way, row)


def test_loadtool_cost_saturate_climbs_and_counts_loss(tmp_path: Path) -> None:
    """`--saturate` (packets per core, bench/loadtool_saturate.py) on tiny shapes: every engine measured at the
    fixed shape and climbing to the cap, each run with the whole run's loss counted on both sides; the stand-in's
    GSO sends (each user's packets of a tick in one) arrive as the datagrams they carry."""
    out = tmp_path / "saturate.json"
    proc = subprocess.run([sys.executable, "-m", "bench.loadtool_cost", "--saturate", "--shapes", "2",
                           "--max-calls", "3", "--seconds", "0.5", "--rounds", "1", "--engines", "python,shared",
                           "--stand-in-gso", "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["fixed"]["2"]["us_per_packet"]) == {"python", "shared"}
    for spec in ("python", "shared"):
        (climb,) = result["saturation"][spec]["climbs"]
        assert climb["runs"] and max(row["calls"] for row in climb["runs"]) <= 3, climb
        for row in climb["runs"]:
            assert row["stand_in"]["sent"] > 0 and row["received_total"] > 0, row
            assert row["received_total"] == row["stand_in"]["sent"], row  # GSO sends counted per datagram
            assert 0 <= row["loss"] <= 1 and row["loss"] == max(row["rx_loss"], row["tx_loss"]), row
            assert row["srtp_errors"] == 0, row
