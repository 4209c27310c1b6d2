"""An impaired link for the namespace tests: loss, delay and jitter on everything a client's router forwards.

``tc qdisc ... netem`` is what one would use, but this kernel has no ``sch_netem`` (and nftables' native ``queue``
expression is missing), so the router sends the link's forwarded packets to an NFQUEUE with Debian's
``iptables`` (the xtables ``NFQUEUE`` target, through nft_compat) and nfqueue_delay.py, running in the router's
namespace, holds each one ``delay ± jitter`` and drops ``loss`` of them before the kernel forwards it on: real
packets on the real forward path (NAT included), impaired in both directions like netem on both ends of the link.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from net.netns import Host

DELAYER = Path(__file__).with_name("nfqueue_delay.py")
IPTABLES = "/usr/sbin/iptables"


class ImpairedLink:
    """``router``'s private link (eth1) impaired until ``close()``; ``stats`` then says what the delayer did."""

    def __init__(self, router: Host, *, delay: float, jitter: float, loss: float, queue: int = 0) -> None:
        self.router = router
        self.queue = queue
        self.stats: dict[str, Any] = {}
        self.proc = router.popen([sys.executable, str(DELAYER), "--queue", str(queue), "--delay", str(delay),
                                  "--jitter", str(jitter), "--loss", str(loss), "--seconds", "600"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":  # bounded: the delayer exits if it cannot bind
            self.proc.wait(10)
            raise AssertionError(f"nfqueue_delay.py did not start in {router.short}: "
                                 f"{self.proc.stderr.read().decode(errors='replace') if self.proc.stderr else ''}")
        self.rules = [["-i", "eth1"], ["-o", "eth1"]]
        for rule in self.rules:  # without "--queue-bypass": if the delayer dies, the link goes dark (loudly)
            router.run(IPTABLES, "-A", "FORWARD", *rule, "-j", "NFQUEUE", "--queue-num", str(queue))

    def close(self) -> dict[str, Any]:
        for rule in self.rules:
            self.router.run(IPTABLES, "-D", "FORWARD", *rule, "-j", "NFQUEUE", "--queue-num", str(self.queue))
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        out, err = self.proc.communicate(timeout=15)
        lines = out.decode().strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"nfqueue_delay.py failed ({self.proc.returncode}): {err.decode(errors='replace')}")
        self.stats = json.loads(lines[-1])
        return self.stats
