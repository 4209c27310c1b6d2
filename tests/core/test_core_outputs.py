"""The output family's kind bases: every output is exactly one kind, and the bases leave the codec unchanged."""

from __future__ import annotations

from dataclasses import fields

import pytest
from callsd.core import (
    OUTPUT_TYPES,
    CallFact,
    ConfigChanged,
    Rejected,
    Rejection,
    RejectReason,
    RouteAdded,
    RoutingChange,
    TimerRequest,
    TrackKind,
    encode_output,
    outputs_digest,
)

KINDS = (CallFact, RoutingChange, TimerRequest, Rejection, ConfigChanged)


@pytest.mark.parametrize("cls", list(OUTPUT_TYPES.values()), ids=list(OUTPUT_TYPES))
def test_every_output_is_exactly_one_kind(cls: type) -> None:
    assert sum(issubclass(cls, k) for k in KINDS) == 1


def test_channel_outputs_name_their_channel() -> None:
    for cls in OUTPUT_TYPES.values():
        if issubclass(cls, CallFact | RoutingChange):
            assert "channel_id" in {f.name for f in fields(cls)}


def test_bases_add_no_field_to_the_encoding() -> None:
    """The log's digests were recorded before the bases existed: the encoding of an output is its type + fields."""
    route = RouteAdded(channel_id="c", track_id="t", kind=TrackKind.AUDIO, publisher_id="p", receiver_id="r",
                       paused=False)
    assert encode_output(route) == {"type": "RouteAdded", "channel_id": "c", "track_id": "t", "kind": "audio",
                                    "publisher_id": "p", "receiver_id": "r", "paused": False}
    rejected = Rejected(session_id="s", command="Mute", reason=RejectReason.NOT_IN_CALL)
    assert encode_output(rejected) == {"type": "Rejected", "session_id": "s", "command": "Mute",
                                       "reason": "not_in_call"}
    # Canonical JSON sorts keys, so the field order the bases imply does not reach the digest.
    # (the digest below was computed before the bases existed).
    assert outputs_digest([route]) == "1c59993acf95a14d6228c3f6b41ef1b13b2d6cf233dcf591da092195e8686549"


def test_the_public_api_exports_what_embedders_and_adapters_use() -> None:
    import callsd.core

    wanted = {"SessionInput", "TargetedInput", "canonical_json", "ChannelOutput", "CallFact", "RoutingChange",
              "TimerRequest", "Rejection", "CallsMachine", "TRANSITIONS", "Transition", "checkpoint", "replay"}
    assert wanted <= set(callsd.core.__all__)
    assert all(hasattr(callsd.core, name) for name in callsd.core.__all__)
