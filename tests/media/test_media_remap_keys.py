"""Routes with equal extension tables share rewritten blocks through a small name per table; clients choose the
ids, so the names are bounded: past the cap a route gets a private name and the table of names stops growing."""

from __future__ import annotations

import pytest
from callsd.adapters.media import forwarder
from callsd.core.wire.rtp import make_extension_remap


def test_equal_tables_share_a_name_and_past_the_cap_routes_get_private_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forwarder, "_REMAP_KEYS", {})
    monkeypatch.setattr(forwarder, "_MAX_SHARED_REMAPS", 3)
    shared = [forwarder._remap_key(make_extension_remap({1: i})) for i in (2, 3, 4)]
    assert shared == [0, 1, 2]
    assert forwarder._remap_key(make_extension_remap({1: 3})) == 1  # an equal table: the same name
    private = [forwarder._remap_key(make_extension_remap({1: i})) for i in range(5, 105)]
    assert len(set(private)) == 100 and all(key < 0 for key in private)  # unique, never a shared name
    assert len(forwarder._REMAP_KEYS) == 3
    assert forwarder._remap_key(make_extension_remap({1: 2})) == 0  # the shared ones still resolve
