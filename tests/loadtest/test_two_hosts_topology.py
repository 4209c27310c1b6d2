"""The capacity bench's two-hosts topology (bench/capacity_topology.py, ADR 0049) carries a real call both ways and
leaves nothing behind.

A `callsd serve` in the server namespace and `callsd loadtest` in the tool namespace, joined by a veth pair with
"napi" receive steering (each end's receive in a kernel thread on its own side's CPU), 2 calls x 4 users, 2 talking
in each, for a few seconds. What a user would observe: everyone connected and every listener heard every talker in
its call (so media went tool -> server and server -> tool). What the bench relies on: each end's receive ran in its
own thread (its CPU time grew) and both namespaces counted datagrams in. Afterwards the namespaces, their veth pair
and the receive threads are gone. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A real server and load tool in namespaces: the real-peer group (one worker, one retry; tests/conftest.py).
pytestmark = pytest.mark.net

ROOT = Path(__file__).resolve().parents[2]
# Run as the benches run, from the repository root (``bench`` is not an installed package).
PROBE = """
import contextlib, json, sys
from pathlib import Path
from bench.capacity import Shape, run_shape
from bench.capacity_topology import make_topology
from bench.peers.netns import cpu_ns
work = Path(sys.argv[1])
with contextlib.ExitStack() as stack:
    topology = make_topology("two-hosts", stack)
    before = cpu_ns(topology.threads.server), cpu_ns(topology.threads.tool)
    doc = run_shape(Shape("two hosts smoke", 2, 4, 2, 0), steady=6.0, workdir=work, out=work / "two-hosts.json",
                    delay_sample=1, screen_bitrate="1M", media_engine="native", join_timeout=30.0, topology=topology)
    after = cpu_ns(topology.threads.server), cpu_ns(topology.threads.tool)
    print(json.dumps({"doc": doc, "namespaces": [topology.server_namespace, topology.tool_namespace],
                      "threads": [*topology.threads.server, *topology.threads.tool],
                      "server_threads": len(topology.threads.server), "tool_threads": len(topology.threads.tool),
                      "before": before, "after": after}))
"""


def test_two_hosts_topology_carries_media_both_ways_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.splitlines()[-1])
    doc, before, after = probe["doc"], probe["before"], probe["after"]
    assert probe["server_threads"] and probe["tool_threads"]  # "napi" steering: a receive thread per end
    users, overall, kernel = doc["users"], doc["overall"], doc["kernel"]
    assert users["failed"] == 0 and users["connected"] == users["total"] == 8, users
    # 2 talkers x 3 listeners per call, 2 calls: every stream arrived, so audio went up to the server and back
    assert overall["audio_streams_expected"] == 12, overall
    assert overall["audio_streams_received"] == 12, overall
    assert overall["packets_received"] > 0 and overall["packets_sent"] > 0, overall
    assert kernel["topology"] == "two-hosts", kernel
    assert kernel["server_udp_run"]["InDatagrams"] > 0 and kernel["tool_udp_run"]["InDatagrams"] > 0, kernel
    # each side's receive ran in its own end's thread, not in the sender's system call
    assert after[0] > before[0] and after[1] > before[1], (before, after)
    assert not any(Path(f"/run/netns/{ns}").exists() for ns in probe["namespaces"]), "a namespace was left behind"
    assert not any(Path(f"/proc/{pid}").exists() for pid in probe["threads"]), "a receive thread outlived its pair"


def test_the_floor_forwards_across_two_hosts_with_each_receive_on_its_own_side() -> None:
    """`bench.egress_floor --topology two-hosts`: the forwarder in the server namespace, its sink in the tool's;
    every copy arrives, and each side's receive ran in its own end's thread (the tool's: the forwarder's egress)."""
    proc = subprocess.run([sys.executable, "-m", "bench.egress_floor", "--calls", "2", "--seconds", "0.6",
                           "--warmup", "0.2", "--rounds", "1", "--topology", "two-hosts"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout)["runs"]
    assert [(run["where"], run["crypto"]) for run in runs] == [("two-hosts", 1), ("two-hosts", 0)]
    for run in runs:
        assert run["bad"] == 0 and run["send_fail"] == 0, run
        assert run["egress"] == 7 * run["ingress"] > 0, run
        assert run["sink_received"] == run["egress_total"], run  # every copy crossed the pair
        assert run["tool_receive_us_per_egress"] > 0 and run["server_receive_us_per_egress"] > 0, run
