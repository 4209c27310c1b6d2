"""A real nginx (Debian's, installed by scripts/system-deps.sh) on loopback, running the configuration operators
use, deploy/proxy/nginx.conf, with its ``listen``, upstream ``server`` and certificate lines filled in
(``fill_nginx_config``): round-robin over the nodes, WebSocket upgrade, TLS terminated with a throwaway
self-signed certificate for 127.0.0.1. The deployed file is an ``http { }`` snippet: it is included in a minimal
main configuration whose paths are all under the test's temporary directory."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from serve_support import free_port, healthy, terminate

DEPLOYED = Path(__file__).resolve().parents[1] / "deploy" / "proxy" / "nginx.conf"


def fill_nginx_config(text: str, *, http_port: int, https_port: int, backends: list[int], cert: Path,
                      key: Path) -> str:
    """deploy/proxy/nginx.conf for loopback; every line not named here is the deployed file's."""
    out: list[str] = []
    served = False
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        indent = line[: len(line) - len(line.lstrip())]
        if words[:1] == ["listen"]:
            tls = "ssl;" in words
            out.append(f"{indent}listen 127.0.0.1:{https_port if tls else http_port}{' ssl' if tls else ''};")
        elif words[:1] == ["server"] and len(words) > 1 and ":" in words[1]:
            if not served:
                out.extend(f"{indent}server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;" for port in backends)
                served = True
        elif words[:1] == ["ssl_certificate"]:
            out.append(f"{indent}ssl_certificate {cert};")
        elif words[:1] == ["ssl_certificate_key"]:
            out.append(f"{indent}ssl_certificate_key {key};")
        else:
            out.append(line)
    assert served, "deploy/proxy/nginx.conf lost its upstream server lines"
    return "\n".join(out) + "\n"


_MAIN = """\
{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made by Debian's openssl."""
    cert, key = where / "proxy-cert.pem", where / "proxy-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


class Nginx:
    def __init__(self, tmp_path: Path, backends: list[int], *, edit: Callable[[str], str] = str) -> None:
        """``edit`` may change the filled-in site file (a test of a variant an operator may choose)."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            pytest.fail("nginx is not installed: run scripts/system-deps.sh (Debian's nginx package)")
        self.binary = binary
        self.prefix = tmp_path / "nginx"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.cert, key = self_signed(self.prefix)
        site = self.prefix / "callsd.conf"
        site.write_text(edit(fill_nginx_config(DEPLOYED.read_text(), http_port=self.port, https_port=self.tls_port,
                                               backends=backends, cert=self.cert, key=key)))
        self.config = self.prefix / "nginx.conf"
        self.config.write_text(_MAIN.format(user="user root;\n" if os.geteuid() == 0 else "", prefix=self.prefix,
                                            site=site))
        self.log = self.prefix / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def start(self, timeout: float = 10.0) -> None:
        with open(self.prefix / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-p", str(self.prefix), "-e", str(self.log), "-c",
                                          str(self.config)], stdout=out, stderr=subprocess.STDOUT)
        if healthy(self.url, self.proc, timeout):
            return
        text = self.log.read_text() if self.log.exists() else ""
        pytest.fail("nginx did not start:\n" + text[-2000:])

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
