"""The ``[cluster]`` section: defaults, environment, and the clear refusals `callsd config check` prints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from callsd.app.config import ConfigError, load_config

GOOD = {"CALLSD_CLUSTER_ENABLED": "true", "CALLSD_STORE_URL": "postgresql://callsd@db:5432/callsd",
        "CALLSD_CLUSTER_ADVERTISE": "10.0.0.1:8080", "CALLSD_CLUSTER_SECRET": "s" * 32}


def test_defaults_off_and_named_after_the_host() -> None:
    cluster = load_config(None, {}).cluster
    assert (cluster.enabled, cluster.is_handler, cluster.node_id) == (False, True, socket.gethostname())
    assert 1 <= cluster.lease_seconds <= 10


def test_environment_sets_every_key() -> None:
    cluster = load_config(None, {**GOOD, "CALLSD_CLUSTER_IS_HANDLER": "false", "CALLSD_CLUSTER_NODE_ID": "n2",
                                 "CALLSD_CLUSTER_LEASE_SECONDS": "3"}).cluster
    assert (cluster.enabled, cluster.is_handler, cluster.node_id, cluster.lease_seconds) == (True, False, "n2", 3.0)
    assert cluster.advertise == "10.0.0.1:8080"


def test_cluster_needs_postgresql_an_address_and_a_secret() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, {"CALLSD_CLUSTER_ENABLED": "true", "CALLSD_CLUSTER_SECRET": "short"})
    text = str(err.value)
    assert "a cluster needs store.url = \"postgresql://" in text
    assert "cluster.advertise: must be HOST:PORT" in text
    assert "cluster.secret: must be at least 16 characters" in text


def test_config_check_masks_the_secret_and_refuses_sqlite() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSD_")}
    ok = subprocess.run([sys.executable, "-m", "callsd.app.cli", "config", "check"], env={**env, **GOOD},
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "[cluster]" in ok.stdout and 'secret = "***"' in ok.stdout and "s" * 32 not in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "callsd.app.cli", "config", "check"],
                         env={**env, **GOOD, "CALLSD_STORE_URL": ""}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "a cluster needs store.url" in bad.stderr
