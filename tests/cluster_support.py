"""Cluster nodes for tests: ``callsd serve`` processes on loopback sharing one PostgreSQL log, and a client."""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import trio
from serve_support import ServeProcess
from trio_websocket import open_websocket_url

SECRET = "cluster-test-secret-0123456789"
# A valid cluster configuration from the environment alone (for `callsd config check`)
GOOD_ENV = {"CALLSD_CLUSTER_ENABLED": "true", "CALLSD_STORE_URL": "postgresql://callsd@db:5432/callsd",
            "CALLSD_CLUSTER_ADVERTISE": "10.0.0.1:8080", "CALLSD_CLUSTER_SECRET": "s" * 32}


def lease_of(pg_url: str, channel: str | None = None) -> tuple[str, int, str] | None:
    """``(owner, epoch, stream)`` of the lease on ``channel``'s call, or of the one call's (``channel`` None: tests
    with a single call); None while nobody holds one."""
    with psycopg.connect(pg_url, autocommit=True) as db:
        if channel is None:
            row = db.execute("SELECT owner, epoch, stream FROM call_leases WHERE stream LIKE 'channel/%'").fetchone()
        else:
            row = db.execute("SELECT owner, epoch, stream FROM call_leases WHERE stream = %s",
                             ("channel/" + channel,)).fetchone()
    return None if row is None else (str(row[0]), int(row[1]), str(row[2]))


def owner_of(pg_url: str, channel: str | None = None) -> tuple[str, int]:
    """``(owner, epoch)`` of a lease that must exist (``lease_of``)."""
    lease = lease_of(pg_url, channel)
    assert lease is not None, f"no lease on {channel or 'the call'}"
    return lease[0], lease[1]


async def kill_owner(nodes: Mapping[str, ServeProcess], pg_url: str,
                     owner: tuple[str, int, str]) -> tuple[str, int, str]:
    """``kill -9`` the node holding ``owner`` (a ``lease_of``) and wait, 10 s at most, for the lease's next epoch;
    returns that lease, which another node must hold."""
    killed = time.monotonic()
    await trio.to_thread.run_sync(nodes[owner[0]].kill)
    with trio.fail_after(10):
        while (now := lease_of(pg_url)) is None or now[1] == owner[1]:
            await trio.sleep(0.05)
    print(f"owner {owner[0]} killed; {now[0]} took the call over at epoch {now[1]} after "
          f"{time.monotonic() - killed:.1f} s")
    assert now[0] != owner[0]
    return now


def lease_lapsed(pg_url: str) -> bool:
    """Whether the (one) call's lease exists and has expired by the database's clock."""
    with psycopg.connect(pg_url, autocommit=True) as db:
        row = db.execute("SELECT expires_at <= clock_timestamp() FROM call_leases").fetchone()
    return row is not None and bool(row[0])


def one_call_load(urls: Sequence[str], users: int, duration: float, out: Path, *, join_timeout: float = 20,
                  reconnect: bool = False) -> list[str]:
    """The ``callsd loadtest`` command of one call of ``users`` users, all talking, spread over ``urls`` (a balancer,
    or the nodes round-robin); its results in ``out``."""
    return [sys.executable, "-m", "callsd.app.cli", "loadtest", *[a for url in urls for a in ("--url", url)],
            "--calls", "1", "--users-per-call", str(users), "--unmuted", str(users), "--duration", str(duration),
            "--join-duration", "1", "--join-timeout", str(join_timeout), *(["--reconnect"] if reconnect else []),
            "--output", str(out), "--quiet"]


def node_metric(url: str, name: str, context: ssl.SSLContext | None = None) -> float:
    """A metric of the node at ``url``, summed over its samples (the cluster's carry the node's name as a label)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5, context=context) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def cluster_node(tmp_path: Path, pg_url: str, name: str, *, handler: bool = True, lease: float = 2.0,
                 **env: str) -> ServeProcess:
    """One node (not started), its data under ``tmp_path/name``; its relay links on its own HTTP port."""
    where = tmp_path / name
    where.mkdir(parents=True, exist_ok=True)
    node = ServeProcess(where, CALLSD_STORE_URL=pg_url, CALLSD_CLUSTER_ENABLED="true", CALLSD_CLUSTER_NODE_ID=name,
                        CALLSD_CLUSTER_SECRET=SECRET, CALLSD_CLUSTER_IS_HANDLER="true" if handler else "false",
                        CALLSD_CLUSTER_LEASE_SECONDS=str(lease), CALLSD_LOG_LEVEL="info", **env)
    node.env["CALLSD_CLUSTER_ADVERTISE"] = f"127.0.0.1:{node.port}"
    return node


class Peer:
    """A signaling client that remembers every message it was sent (docs/protocol.md)."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.seen, self.session_id, self.secret = ws, [], "", ""

    async def send(self, kind: str, data: dict[str, Any] | None = None) -> None:
        await self.ws.send_message(json.dumps({"type": kind, "data": data or {}}))

    async def expect(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                msg = json.loads(await self.ws.get_message())
                self.seen.append(msg)
                if msg["type"] == "join_ack":
                    self.session_id = msg["data"]["session_id"]
                    self.secret = msg["data"]["reconnect_secret"]
                if msg["type"] == kind and all(msg["data"].get(k) == v for k, v in match.items()):
                    return msg["data"]  # type: ignore[no-any-return]

    async def join(self, channel: str, name: str) -> dict[str, Any]:
        await self.send("join", {"channel_id": channel, "display_name": name})
        return await self.expect("join_ack")


@asynccontextmanager
async def peer(node: ServeProcess) -> AsyncIterator[Peer]:
    async with open_websocket_url(node.url.replace("http", "ws") + "/api/v1/websocket") as ws:
        client = Peer(ws)
        await client.expect("hello")
        yield client
