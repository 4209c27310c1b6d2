"""The load-test tool behind ``callsd loadtest``: cheap simulated WebRTC users, results, plots.

Modules: ``sdp`` (the client's own small SDP), ``media`` (ICE/DTLS/SRTP legs and the per-process media engine),
``stats`` (loss, jitter, delay), ``worker`` (one load process), ``runner`` (processes, progress display, results
JSON), ``plot`` (the report PNG).
"""

from __future__ import annotations

__all__: list[str] = []
