"""deploy/systemd/*.service and deploy/sysctl/90-callsd.conf, checked as systemd and an operator would see them.

`systemd-analyze verify` (Debian's systemd, scripts/system-deps.sh) runs on the units in a scratch root (--root): the
host's unit library copied there, the units in its /etc/systemd/system and an executable at the ExecStart path
(/opt/callsd/bin/callsd, where the image and the install notes put callsd), so it checks every key and value without
this machine having callsd installed. systemd-analyze reports bad values and unknown keys as messages with exit code
0, so any output fails the test; a deliberately broken unit proves the check is not vacuous. The invariants (drain
covered by TimeoutStopSec, sandbox, state directory = data_dir) are checked against the configuration's own defaults.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from callsd.app.config import RtcConfig, ShutdownConfig
from callsd.app.rtcd_config import ApiConfig

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
SYSCTL = REPO / "deploy" / "sysctl" / "90-callsd.conf"
CLOSE_MARGIN = 60.0  # seconds beyond the drain for closing sockets and the log

# unit -> (subcommand, the drain its TimeoutStopSec must cover)
DRAINS = {
    "callsd.service": ("serve", ShutdownConfig().drain_timeout),
    "callsd-rtcd.service": ("rtcd", ApiConfig().drain_timeout),
}


def _entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; systemd unit files repeat keys, so no dict."""
    section, out = "", []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def _one(entries: list[tuple[str, str, str]], key: str) -> str:
    values = [v for _s, k, v in entries if k == key]
    assert len(values) == 1, (key, values)
    return values[0]


_SPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0,
               "d": 86400.0}


def _seconds(span: str) -> float:
    """A systemd time span ("5min", "5h 10min", "90") in seconds (systemd.time(7))."""
    if span.isdigit():
        return float(span)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), span
    return sum(float(n) * _SPAN_UNITS[u] for n, u in parts)


def _verify(root: Path, units: list[Path]) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify of ``units`` inside a scratch root that has systemd's unit library and callsd."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    executable = root / "opt/callsd/bin/callsd"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}", *(u.name for u in units)],
                          capture_output=True, text=True, timeout=60)


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: bash scripts/system-deps.sh installs systemd"
    done = _verify(tmp_path, sorted(UNITS.glob("*.service")))
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "units" / "callsd.service"
    broken.parent.mkdir()
    broken.write_text((UNITS / "callsd.service").read_text().replace("ProtectSystem=strict", "ProtectSystem=stricty"))
    done = _verify(tmp_path / "root", [broken])
    assert "stricty" in done.stdout + done.stderr


@pytest.mark.parametrize("unit", sorted(DRAINS))
def test_a_stop_drains_and_the_sandbox_holds(unit: str) -> None:
    entries = _entries(UNITS / unit)
    command, drain = DRAINS[unit]
    exec_start = _one(entries, "ExecStart").split()
    assert exec_start[:2] == ["/opt/callsd/bin/callsd", command]
    # the configuration is a credential: --config names the file LoadCredential hands over
    credential = _one(entries, "LoadCredential").split(":")[0]
    assert exec_start[2:] == ["--config", f"%d/{credential}"]
    assert _one(entries, "KillSignal") == "SIGTERM" and _one(entries, "KillMode") == "mixed"
    assert _seconds(_one(entries, "TimeoutStopSec")) >= drain + CLOSE_MARGIN
    assert _one(entries, "RestartPreventExitStatus") == "2"  # a refused configuration is not retried in a loop
    state = _one(entries, "StateDirectory")
    assert f"CALLSD_STORE_DATA_DIR=%S/{state}" in _one(entries, "Environment").split()
    for key, value in {"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": "", "AmbientCapabilities": "", "RestrictNamespaces": "yes",
                       "SystemCallArchitectures": "native"}.items():
        assert _one(entries, key) == value, key
    families = set(_one(entries, "RestrictAddressFamilies").split())
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= families and "AF_PACKET" not in families


def test_the_sysctl_drop_in_raises_the_udp_buffer_limits_above_what_callsd_asks() -> None:
    settings = {}
    for raw in SYSCTL.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = int(value.strip())
    # the reference's tunings: 16 MiB maxima for receive, send and ancillary buffers
    assert settings == {"net.core.rmem_max": 16 << 20, "net.core.wmem_max": 16 << 20, "net.core.optmem_max": 16 << 20}
    for key in settings:  # real kernel settings, spelled as sysctl(8) reads them
        assert Path("/proc/sys", *key.split(".")).exists(), key
    rtc = RtcConfig()
    assert settings["net.core.rmem_max"] >= rtc.udp_rcvbuf and settings["net.core.wmem_max"] >= rtc.udp_sndbuf
