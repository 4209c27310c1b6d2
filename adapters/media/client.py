"""Moved: the project's one WebRTC client engine is ``callsd.peer`` (peer/), and its awaitable single-peer form is
``callsd.peer.MediaClient``. This name stays so that code written against ``callsd.adapters.media.client``
(bench/forward.py) keeps working; import from ``callsd.peer`` in new code."""

from __future__ import annotations

from callsd.peer.client import ClientError, MediaClient

__all__ = ["MediaClient", "ClientError"]
