"""A real HAProxy (Debian's, installed by scripts/system-deps.sh) on loopback, running the configuration operators
use, deploy/proxy/haproxy.cfg, with its ``bind`` and ``server`` lines filled with loopback ports
(``fill_haproxy_config``): round-robin over HTTP backends, WebSockets passed through, backends health-checked on
/healthz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from serve_support import free_port, healthy, terminate

DEPLOYED = Path(__file__).resolve().parents[1] / "deploy" / "proxy" / "haproxy.cfg"


def fill_haproxy_config(text: str, listen: str, backends: list[tuple[str, int]]) -> str:
    """deploy/proxy/haproxy.cfg for loopback: the frontend's (uncommented) ``bind`` lines become one ``bind``
    on ``listen``, the backend's ``server`` lines one per backend; every other line is the deployed file's."""
    out: list[str] = []
    bound = served = False
    for line in text.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if word == "bind":
            if not bound:
                out.append(f"    bind {listen}")
                bound = True
            continue
        if word == "server":
            if not served:
                out.extend(f"    server {name} 127.0.0.1:{port} check" for name, port in backends)
                served = True
            continue
        out.append(line)
    assert bound and served, "deploy/proxy/haproxy.cfg lost its bind or server lines"
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, tmp_path: Path, backends: list[tuple[str, int]]) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            pytest.fail("haproxy is not installed: run scripts/system-deps.sh (Debian's haproxy package)")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "haproxy.cfg"
        self.config.write_text(fill_haproxy_config(DEPLOYED.read_text(), f"127.0.0.1:{self.port}", backends))
        self.log = tmp_path / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-f", str(self.config), "-db"], stdout=log,
                                         stderr=subprocess.STDOUT)
        if healthy(self.url, self.proc, timeout):
            return
        pytest.fail("haproxy did not start:\n" + self.log.read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
