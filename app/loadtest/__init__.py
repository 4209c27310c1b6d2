"""The load-test tool behind ``callsd loadtest``: cheap simulated WebRTC users, results, plots.

Modules: ``sdp`` (the client's own small SDP), ``worker`` (one load process: simulated users' signaling, their
media through the project's one client engine, ``callsd.peer``), ``runner`` (processes, progress display, results
JSON), ``plot`` (the report PNG). The public entry points are re-exported here::

    from callsd.app.loadtest import LoadConfig, run_loadtest, ServerUnreachable
    doc = run_loadtest(LoadConfig(url="http://127.0.0.1:8080", calls=2, users_per_call=3, duration=10))
"""

from __future__ import annotations

from .plot import load_results, plot_results
from .runner import LoadConfig, ServerUnreachable, build_results, parse_metrics, print_summary
from .runner import run as run_loadtest

__all__ = [
    "LoadConfig",
    "ServerUnreachable",
    "run_loadtest",
    "build_results",
    "parse_metrics",
    "print_summary",
    "load_results",
    "plot_results",
]
