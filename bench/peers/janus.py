"""Debian's Janus, installed if missing, configured for a fair one-core comparison, started in a namespace.

Configuration (written to a temporary folder, never /etc/janus): only the VideoRoom plugin and the WebSocket
transport are loaded (symlinks to the packaged modules; no event handlers, no loggers), ``event_loops = 1`` (all
handles share one media loop thread, as callsd's one forwarding loop), ``session_timeout = 0`` (no keep-alive
traffic to account for), ICE-lite on the namespace's veth interface only (``ice_enforce_list``; the load tool is
the controlling agent, as against callsd), no NAT helpers, IPv4 only, logging at warnings. Janus is started under
``taskset -c <cpu>``, so every one of its threads shares that core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .netns import Pair, ServerProcess

__all__ = ["JanusError", "JanusProcess", "ensure_installed", "write_config", "MODULES"]

MODULES = Path("/usr/lib/x86_64-linux-gnu/janus")
WS_PORT = 8188


class JanusError(RuntimeError):
    """Janus could not be installed or did not start; the message says why (with its log's tail)."""


def ensure_installed() -> str:
    """The path of the ``janus`` binary, installing Debian's package (apt-get) when it is missing."""
    found = shutil.which("janus")
    if found is not None and (MODULES / "plugins" / "libjanus_videoroom.so").exists():
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", "janus"]):
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0 and args[1] == "install":
            raise JanusError(f"`{' '.join(args)}` failed: {proc.stderr.strip()[-2000:]}")
    found = shutil.which("janus")
    if found is None:
        raise JanusError("apt-get installed janus but no `janus` binary is on PATH")
    return found


def write_config(folder: Path, *, interface: str, address: str, ws_port: int = WS_PORT, debug_level: int = 3) -> Path:
    """Write janus.jcfg and the module configs into ``folder``; returns the main config's path."""
    for kind, module in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_websockets.so")):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        link = folder / kind / module
        if not link.exists():
            link.symlink_to(MODULES / kind / module)
    for empty in ("events", "loggers"):
        (folder / empty).mkdir(exist_ok=True)
    main = folder / "janus.jcfg"
    main.write_text(f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder / 'plugins'}"
    transports_folder = "{folder / 'transports'}"
    events_folder = "{folder / 'events'}"
    loggers_folder = "{folder / 'loggers'}"
    debug_level = {debug_level}
    admin_secret = "bench-peers"
    session_timeout = 0
    event_loops = 1
    server_name = "callsd-bench-peers"
    interface = "{address}"
}}
certificates: {{
}}
media: {{
    ipv6 = false
    rtp_port_range = "20000-60000"
}}
nat: {{
    nice_debug = false
    full_trickle = false
    ice_lite = true
    ice_tcp = false
    ignore_mdns = true
    ice_enforce_list = "{interface}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
    broadcast = false
}}
""")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
    json = "plain"
    ws = true
    ws_port = {ws_port}
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return main


class JanusProcess(ServerProcess):
    """``janus`` running in ``pair``'s server namespace, pinned to ``cpu``; a context manager.

    ``url`` is its WebSocket API (``ws://<server address>:8188/``, subprotocol ``janus-protocol``); ``pid`` is
    Janus's own (``ip netns exec`` and ``taskset`` exec it), the process whose CPU time is measured."""

    def __init__(self, pair: Pair, folder: Path, *, cpu: int | None = 0) -> None:
        self.pair = pair
        self.folder = folder
        self.cpu = cpu
        self.url = f"ws://{pair.server_address}:{WS_PORT}/"
        super().__init__(folder / "janus.log")

    def __enter__(self) -> JanusProcess:
        binary = ensure_installed()
        config = write_config(self.folder, interface=self.pair.server_interface,
                              address=self.pair.server_address)
        pin = ["taskset", "-c", str(self.cpu)] if self.cpu is not None else []
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child; closed when we are
        self.proc = subprocess.Popen(self.pair.server_args(*pin, binary, "-C", str(config), "-F", str(self.folder),
                                                           "-o"),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_listening("janus", WS_PORT, 20, JanusError)
        return self
