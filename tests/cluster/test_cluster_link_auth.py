"""The relay link is authenticated and fenced (issue 12: "an internal, authenticated node-to-node link"; ADR 0017):
on a real node, `/internal/v1/relay` refuses a missing or wrong link key (and the cluster secret itself) with 403
before any upgrade, a link at another epoch than the live lease's with 409, and serves one that presents the key
derived from `cluster.secret` at the live epoch, stamping its frames with that epoch; a frame stamped with another
epoch ends the link unread."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
import trio
from callsd.adapters.cluster.link import LINK_HEADER, LINK_PATH, link_key, unwrap, wrap
from cluster_support import SECRET, cluster_node, peer
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

pytestmark = pytest.mark.slow


async def test_the_relay_link_needs_the_derived_key_and_the_live_epoch(pg_url: str, tmp_path: Path) -> None:
    n1 = cluster_node(tmp_path, pg_url, "n1")
    await trio.to_thread.run_sync(n1.start)
    try:
        async with peer(n1) as alice:
            await alice.join("room", "alice")
            with psycopg.connect(pg_url, autocommit=True) as db:
                row = db.execute("SELECT epoch FROM call_leases WHERE stream = 'channel/room'").fetchone()
            assert row is not None
            epoch = int(row[0])

            def url(at: int) -> str:
                query = urlencode({"channel": "room", "session": "link-test", "epoch": str(at)})
                return f"ws://127.0.0.1:{n1.port}{LINK_PATH}?{query}"

            for key in (None, "0" * 64, SECRET):  # no key, a wrong one, the secret itself (never sent)
                headers = [] if key is None else [(LINK_HEADER.encode(), key.encode())]
                with pytest.raises(ConnectionRejected) as refused:
                    async with open_websocket_url(url(epoch), extra_headers=headers):
                        pass
                assert refused.value.status_code == 403, key
            good = [(LINK_HEADER.encode(), link_key(SECRET).encode())]
            with pytest.raises(ConnectionRejected) as stale:
                async with open_websocket_url(url(epoch + 1), extra_headers=good):
                    pass
            assert stale.value.status_code == 409  # not the owner at that epoch

            async with open_websocket_url(url(epoch), extra_headers=good) as link:
                with trio.fail_after(10):
                    assert unwrap(await link.get_message()) == (epoch, "")  # the owner's epoch, first
                    join = {"type": "join", "data": {"channel_id": "room", "display_name": "bob"}}
                    await link.send_message(wrap(epoch, json.dumps(join)))
                    while True:
                        got, frame = unwrap(await link.get_message())
                        assert got == epoch  # every frame stamped with the lease's epoch
                        if (msg := json.loads(frame))["type"] == "join_ack":
                            bob = msg["data"]["session_id"]
                            break
                    await alice.expect("user_joined", session_id=bob)  # the relayed session joined the call
                    # A frame stamped with another epoch is refused: the owner ends the link, acting on nothing.
                    await link.send_message(wrap(epoch + 1, json.dumps({"type": "raise_hand", "data": {}})))
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await link.get_message()
            await alice.expect("user_disconnected", session_id=bob)
            assert not [m for m in alice.seen if m["type"] == "user_raised_hand"], alice.seen
    finally:
        await trio.to_thread.run_sync(n1.stop)
