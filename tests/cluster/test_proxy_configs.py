"""deploy/proxy/*: the files operators copy are valid for the proxies they name (HAProxy checks the deployed file as
it is; nginx checks it once its certificate paths exist), and the tests' filling changes only the lines it says."""

from __future__ import annotations

import subprocess
from pathlib import Path

from haproxy_support import DEPLOYED as HAPROXY_CFG
from haproxy_support import HAProxy, fill_haproxy_config
from nginx_support import DEPLOYED as NGINX_CONF
from nginx_support import Nginx


def test_the_deployed_haproxy_cfg_is_valid_as_it_is() -> None:
    checked = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "http-reuse never" in HAPROXY_CFG.read_text()  # the variant the cluster tests run (reuse works too)


def test_filling_the_haproxy_cfg_replaces_only_bind_and_server_lines(tmp_path: Path) -> None:
    text = HAPROXY_CFG.read_text()
    filled = fill_haproxy_config(text, "127.0.0.1:1", [("a", 2), ("b", 3)])
    kept = [line for line in text.splitlines() if line.split()[:1] not in (["bind"], ["server"])]
    assert [line for line in filled.splitlines() if line.split()[:1] not in (["bind"], ["server"])] == kept
    assert "    server a 127.0.0.1:2 check" in filled and "    bind 127.0.0.1:1" in filled
    proxy = HAProxy(tmp_path, [("a", 2)])
    checked = subprocess.run(["haproxy", "-c", "-f", str(proxy.config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_deployed_nginx_conf_is_valid_once_filled(tmp_path: Path) -> None:
    proxy = Nginx(tmp_path, [2, 3])
    checked = subprocess.run([proxy.binary, "-t", "-p", str(proxy.prefix), "-e", str(proxy.log), "-c",
                              str(proxy.config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = NGINX_CONF.read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert not [line for line in text.splitlines() if line.split()[:1] == ["keepalive"]]  # no pooled connections
