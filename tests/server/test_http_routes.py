"""The routes a single server and a cluster node share (app/http_routes.py), on a bare Quart-Trio app: what each
answers for a node's state, without a hub or a database. The end-to-end answers of both kinds of node are tested in
tests/server/test_server_http.py and tests/cluster/test_cluster_api.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from callsd.app.auth import create_token
from callsd.app.config import Config, load_config
from callsd.app.http_routes import NodeView, Unavailable, install_node_routes
from quart import Response
from quart_trio import QuartTrio

SECRET = "s" * 32
CALLS = [{"channel_id": "a", "call_id": "1", "participants": 2}, {"channel_id": "b", "call_id": "2", "participants": 1}]


def _app(config: Config, *, draining: bool = False, calls: Any = None) -> QuartTrio:
    async def listed() -> list[dict[str, Any]]:
        if calls is not None:
            raise calls
        return CALLS

    async def metrics() -> Response:
        return Response("callsd_up 1\n", content_type="text/plain")

    app = QuartTrio(__name__)
    install_node_routes(app, config, NodeView(version="9.9", draining=lambda: draining,
                                              health=lambda: {"node": "n1"}, metrics=metrics, calls=listed))
    return app


async def test_healthz_says_ok_with_the_node_fields_and_503_while_draining() -> None:
    config = load_config(None, {})
    ok = await _app(config).test_client().get("/healthz")
    assert (ok.status_code, await ok.get_json()) == (200, {"status": "ok", "node": "n1"})
    draining = await _app(config, draining=True).test_client().get("/healthz")
    assert (draining.status_code, await draining.get_json()) == (503, {"status": "draining"})


async def test_channels_are_the_tokens_only_and_503_when_the_directory_is_away() -> None:
    config = load_config(None, {"CALLSD_AUTH_MODE": "token", "CALLSD_AUTH_SECRET": SECRET})
    client = _app(config).test_client()
    assert (await client.get("/api/v1/channels")).status_code == 401
    token = create_token(secret=SECRET, user_id="u", channels=["b"], expires_at=int(time.time()) + 60)
    listed = await client.get("/api/v1/channels", headers={"Authorization": f"Bearer {token}"})
    assert (await listed.get_json())["channels"] == [CALLS[1]]
    away = await _app(config, calls=Unavailable("the cluster's directory is unreachable")).test_client().get(
        "/api/v1/channels", query_string={"token": token})
    assert away.status_code == 503
    assert (await away.get_json())["error"] == {"code": "unavailable",
                                                "message": "the cluster's directory is unreachable"}


@pytest.mark.parametrize("listen, status", [("", 200), ("127.0.0.1:0", 404)])
async def test_metrics_answer_here_only_without_a_metrics_listener(listen: str, status: int) -> None:
    config = load_config(None, {"CALLSD_METRICS_LISTEN": listen})
    answer = await _app(config).test_client().get("/metrics")
    assert answer.status_code == status


async def test_version_and_client_config_are_the_same_shape_on_every_node() -> None:
    client = _app(load_config(None, {})).test_client()
    assert (await (await client.get("/version")).get_json())["version"] == "9.9"
    assert set(await (await client.get("/api/v1/config")).get_json()) == {
        "auth_mode", "protocol", "allow_screen_sharing", "max_participants"}
