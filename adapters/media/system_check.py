"""System tunings for the RTC port: the kernel's socket-buffer limits against what the server asks, and the exact
``sysctl`` lines to apply when they are short.

A UDP socket's receive buffer absorbs bursts (a keyframe of every video in a call arrives at once); when it is full
the kernel drops packets before the server sees them, which shows up as video freezes, not as an error. Linux caps
``SO_RCVBUF``/``SO_SNDBUF`` requests at ``net.core.rmem_max``/``wmem_max`` (a process with CAP_NET_ADMIN may exceed
them with the FORCE options, which ``udp.open_socket`` tries first; a media worker run as an ordinary user cannot),
and ``net.core.optmem_max`` bounds per-socket ancillary data. ``check_system`` reads the three limits from
/proc/sys, opens a scratch UDP socket (or takes the sizes the RTC socket actually got) and says what to change.

It is printed by ``callsd config check --system`` and logged by the media plane at start.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SystemReport", "check_system", "RECOMMENDED_OPTMEM", "read_sysctl"]

RECOMMENDED_OPTMEM = 16 * 1024 * 1024  # what the reference deployment guide recommends for the three limits
_PROC = Path("/proc/sys/net/core")


def read_sysctl(name: str, proc: Path = _PROC) -> int | None:
    """The integer value of ``net.core.<name>``, or None when it cannot be read (not Linux, no /proc)."""
    try:
        return int((proc / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemReport:
    """The limits found, the buffer sizes the socket got (usable bytes), and the sysctl lines to apply."""

    rmem_max: int | None
    wmem_max: int | None
    optmem_max: int | None
    rcvbuf_asked: int
    sndbuf_asked: int
    rcvbuf_got: int
    sndbuf_got: int
    fixes: tuple[str, ...]  # "net.core.rmem_max = 4194304" lines; empty when nothing is short

    @property
    def ok(self) -> bool:
        return not self.fixes

    def lines(self) -> list[str]:
        """What ``config check --system`` prints and start-up logs, one finding per line."""
        def shown(value: int | None) -> str:
            return "unreadable" if value is None else str(value)

        out = [f"net.core.rmem_max = {shown(self.rmem_max)}, net.core.wmem_max = {shown(self.wmem_max)}, "
               f"net.core.optmem_max = {shown(self.optmem_max)}",
               f"RTC socket buffers: receive {self.rcvbuf_got} bytes (asked {self.rcvbuf_asked}), "
               f"send {self.sndbuf_got} bytes (asked {self.sndbuf_asked})"]
        if self.ok:
            out.append("socket buffer limits are sufficient")
        else:
            out.append("limits are short: as root, apply them now with")
            out += [f"  sysctl -w {fix.replace(' = ', '=')}" for fix in self.fixes]
            out.append("and keep them across reboots in /etc/sysctl.d/60-callsd.conf:")
            out += [f"  {fix}" for fix in self.fixes]
        return out


def check_system(*, rcvbuf: int, sndbuf: int, got: tuple[int, int] | None = None,
                 proc: Path = _PROC) -> SystemReport:
    """Compare the kernel limits with ``rcvbuf``/``sndbuf`` (the ``rtc.udp_*`` settings). ``got``: the usable sizes
    the RTC socket obtained; without it a scratch socket asks (without the FORCE options, as an ordinary user's
    socket would)."""
    rmem, wmem, optmem = (read_sysctl(n, proc) for n in ("rmem_max", "wmem_max", "optmem_max"))
    if got is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            # Linux reports twice the usable size (bookkeeping overhead)
            got = (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2,
                   sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)
    fixes = []
    if rcvbuf and (rmem is None or rmem < rcvbuf or got[0] < rcvbuf):
        fixes.append(f"net.core.rmem_max = {max(rcvbuf, rmem or 0)}")
    if sndbuf and (wmem is None or wmem < sndbuf or got[1] < sndbuf):
        fixes.append(f"net.core.wmem_max = {max(sndbuf, wmem or 0)}")
    if optmem is not None and optmem < RECOMMENDED_OPTMEM and fixes:
        fixes.append(f"net.core.optmem_max = {RECOMMENDED_OPTMEM}")
    return SystemReport(rmem_max=rmem, wmem_max=wmem, optmem_max=optmem, rcvbuf_asked=rcvbuf, sndbuf_asked=sndbuf,
                        rcvbuf_got=got[0], sndbuf_got=got[1], fixes=tuple(fixes))
