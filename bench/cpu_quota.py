"""A share of one core for this process, through the cgroup v1 ``cpu`` controller's CFS quota (Linux, as root).

Why: `bench.loadtool_cost --saturate` drives each load-tool engine to its own saturation, and on this 2-CPU host
the stand-in server on the other CPU cannot send what one full core of the native engine receives (a loopback
datagram costs its sender ~2.2–2.6 µs, the delivery into the receiving socket included; the engine spends less than
that per packet). Given ``--tool-quota F``, the tool's process runs under a quota of F of a core, so it saturates at
F of the rate and the stand-in can feed it; packets per CPU-second are measured from the process's own CPU time as
always. The quota's period is short (10 ms, half the tool's 20 ms tick), so a throttled tool waits at most ~10 ms.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["cpu_quota"]

CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 10_000


@contextlib.contextmanager
def cpu_quota(fraction: float | None) -> Iterator[None]:
    """Run the body with this process (all its threads) limited to ``fraction`` of one core; None: no limit.
    The cgroup is made for this run and removed after it, on every exit path; a host without the controller (or
    without the right to use it) fails loudly rather than measuring something else."""
    if fraction is None:
        yield
        return
    if not 0 < fraction <= 1:
        raise ValueError(f"a CPU quota is a fraction of one core in (0, 1], not {fraction}")
    if not (CPU_CGROUP / "cgroup.procs").exists():
        raise RuntimeError(f"no cgroup v1 cpu controller at {CPU_CGROUP}: --tool-quota cannot be applied")
    _remove_stale_groups()
    group = CPU_CGROUP / f"callsd-loadtool-{os.getpid()}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        (group / "cpu.cfs_quota_us").write_text(f"{max(1000, round(fraction * PERIOD_US))}\n")
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            (CPU_CGROUP / "cgroup.procs").write_text(f"{os.getpid()}\n")
    finally:
        group.rmdir()


def _remove_stale_groups() -> None:
    """Remove the empty groups of bench processes that are gone (one killed before its cleanup ran)."""
    for group in CPU_CGROUP.glob("callsd-loadtool-*"):
        pid = group.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):  # not empty after all, or removed meanwhile: leave it
                group.rmdir()
