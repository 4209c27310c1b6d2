"""``Directory``: the cluster's nodes and each call's owner, as recorded in PostgreSQL.

A call's lease (``call_leases``, adapters/store/pg_leases.py) names its owner by node id; ``cluster_nodes`` says
where that node listens for relay links (``cluster.advertise``), whether it hosts calls, and when it last said it
was alive. Every query is one autocommit statement on the directory's own connection, run in a worker thread
(psycopg blocks), one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

__all__ = ["Directory", "NodeInfo", "Owner", "stream_of"]


def stream_of(channel_id: str) -> str:
    """The log stream of a channel's calls: one per channel, since ownership is decided before a call exists."""
    return "channel/" + channel_id


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    advertise: str
    is_handler: bool


@dataclass(frozen=True, slots=True)
class Owner:
    node_id: str
    advertise: str  # "" when the owner never announced itself
    epoch: int
    live: bool  # its lease has not expired, by the database's clock


_ANNOUNCE = """
INSERT INTO cluster_nodes (node_id, advertise, is_handler, seen_at) VALUES (%s, %s, %s, clock_timestamp())
ON CONFLICT (node_id) DO UPDATE SET advertise = excluded.advertise, is_handler = excluded.is_handler,
    seen_at = excluded.seen_at
"""
_OWNER = """
SELECT l.owner, COALESCE(n.advertise, ''), l.epoch, l.expires_at > clock_timestamp()
FROM call_leases l LEFT JOIN cluster_nodes n ON n.node_id = l.owner WHERE l.stream = %s
"""
_HANDLER = """
SELECT advertise FROM cluster_nodes
WHERE is_handler AND node_id <> %s AND seen_at > clock_timestamp() - make_interval(secs => %s)
ORDER BY random() LIMIT 1
"""
# An owner's publication replaces an older epoch's, never a newer one's (a stale owner cannot overwrite).
_PUBLISH = """
INSERT INTO cluster_calls (stream, epoch, calls) VALUES (%s, %s, %s)
ON CONFLICT (stream) DO UPDATE SET epoch = excluded.epoch, calls = excluded.calls
WHERE cluster_calls.epoch <= excluded.epoch
"""
# Only what the live lease's holder published counts: a dead or stale owner's list is not shown.
_LISTED = """
SELECT c.stream, c.calls FROM cluster_calls c JOIN call_leases l ON l.stream = c.stream AND l.epoch = c.epoch
WHERE l.expires_at > clock_timestamp()
"""


class Directory:
    def __init__(self, connect: Callable[[], Any], node: NodeInfo, *, alive_seconds: float) -> None:
        self.connect = connect  # a new autocommit connection to the cluster's database
        self._connect = connect
        self._conn: Any = None
        self._lock = trio.Lock()
        self.node = node
        self.alive_seconds = alive_seconds

    def _run(self, sql: str, params: tuple[Any, ...], every_row: bool = False) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        if not sql.lstrip().startswith("SELECT"):
            return self._conn.execute(sql, params)
        cursor = self._conn.execute(sql, params)
        return cursor.fetchall() if every_row else cursor.fetchone()

    async def _query(self, sql: str, *params: Any, every_row: bool = False) -> Any:
        async with self._lock:
            return await trio.to_thread.run_sync(self._run, sql, params, every_row)

    async def announce(self) -> None:
        await self._query(_ANNOUNCE, self.node.node_id, self.node.advertise, self.node.is_handler)

    async def keep_announcing(self) -> None:
        """Say this node is alive every third of ``alive_seconds`` (a failure is retried; the lease decides
        ownership, this only helps non-handlers find a handler)."""
        while True:
            await trio.sleep(self.alive_seconds / 3)
            try:
                await self.announce()
            except Exception:  # the database is away: leases will say so more precisely
                self._conn = None

    async def owner_of(self, channel_id: str) -> Owner | None:
        row = await self._query(_OWNER, stream_of(channel_id))
        return None if row is None else Owner(str(row[0]), str(row[1]), int(row[2]), bool(row[3]))

    async def a_handler(self) -> str | None:
        """The advertise address of a live handler node other than this one (for single-handler mode)."""
        row = await self._query(_HANDLER, self.node.node_id, self.alive_seconds)
        return None if row is None else str(row[0])

    async def publish_calls(self, channel_id: str, epoch: int, calls: list[dict[str, Any]]) -> None:
        """The ongoing calls of a channel this node hosts at ``epoch`` (``/api/v1/channels`` on every node)."""
        await self._query(_PUBLISH, stream_of(channel_id), epoch, json.dumps(calls))

    async def published_calls(self) -> dict[str, list[dict[str, Any]]]:
        """channel id -> its ongoing calls, as their live owners last published them."""
        rows = await self._query(_LISTED, every_row=True)
        return {str(stream).removeprefix("channel/"): json.loads(calls) for stream, calls in rows}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
