"""A real HAProxy (Debian's, installed by scripts/system-deps.sh) on loopback, running the configuration operators
use, deploy/proxy/haproxy.cfg, with its ``bind`` and ``server`` lines filled with loopback ports
(``fill_haproxy_config``): round-robin over HTTP backends, WebSockets passed through, backends health-checked on
/healthz; with ``tls=True`` the file's commented-out TLS ``bind`` line is switched on too, with a throwaway
certificate, as an operator would (docs/deployment.md, "TLS")."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from nginx_support import self_signed
from serve_support import free_port, healthy, terminate

DEPLOYED = Path(__file__).resolve().parents[1] / "deploy" / "proxy" / "haproxy.cfg"


# The deployed file's TLS line, commented out until an operator has a certificate: `# bind :443 ssl crt PATH ...`
_TLS_BIND = re.compile(r"^\s*#\s*bind\s+\S+\s+(ssl\s[^#]*)")


def deployed_tls_bind(text: str, listen: str, pem: Path) -> str:
    """The deployed file's commented-out TLS ``bind`` line, switched on: its address and its ``crt`` replaced, its
    other options (``ssl``, ``alpn``) kept."""
    [options] = [m.group(1).strip() for line in text.splitlines() if (m := _TLS_BIND.match(line))]
    assert re.search(r"\bcrt\s+\S+", options), options
    return f"    bind {listen} " + re.sub(r"\bcrt\s+\S+", f"crt {pem}", options)


def fill_haproxy_config(text: str, listen: str, backends: list[tuple[str, int]], *,
                        tls: tuple[str, Path] | None = None) -> str:
    """deploy/proxy/haproxy.cfg for loopback: the frontend's (uncommented) ``bind`` lines become one ``bind``
    on ``listen`` (and, given ``tls`` = (address, PEM of certificate and key), the deployed TLS ``bind`` line on
    that address), the backend's ``server`` lines one per backend; every other line is the deployed file's."""
    out: list[str] = []
    bound = served = False
    for line in text.splitlines():
        word = line.split(maxsplit=1)[0] if line.strip() else ""
        if word == "bind":
            if not bound:
                out.append(f"    bind {listen}")
                if tls is not None:
                    out.append(deployed_tls_bind(text, *tls))
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
    def __init__(self, tmp_path: Path, backends: list[tuple[str, int]], *, tls: bool = False) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            pytest.fail("haproxy is not installed: run scripts/system-deps.sh (Debian's haproxy package)")
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "haproxy.cfg"
        self.tls_port, self.cert = 0, Path()
        tls_bind: tuple[str, Path] | None = None
        if tls:
            self.tls_port = free_port()
            self.cert, key = self_signed(tmp_path)
            pem = tmp_path / "haproxy.pem"  # HAProxy's crt: the certificate and its key in one file
            pem.write_text(self.cert.read_text() + key.read_text())
            tls_bind = (f"127.0.0.1:{self.tls_port}", pem)
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.config.write_text(fill_haproxy_config(DEPLOYED.read_text(), f"127.0.0.1:{self.port}", backends,
                                                   tls=tls_bind))
        self.log = tmp_path / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

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
