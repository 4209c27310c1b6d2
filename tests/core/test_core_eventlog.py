"""The record codec's errors: each names the line and the reason."""

from __future__ import annotations

import pytest
from callsd.core import (
    EventLogError,
    JoinCall,
    Muted,
    PublishTrack,
    TrackKind,
    decode_lines,
    decode_output,
    decode_record,
    encode_output,
    encode_record,
    make_record,
    outputs_digest,
)

GOOD = encode_record(make_record(1, JoinCall(at=1, channel_id="c", session_id="s", user_id="u", call_id="k"), []))
DIGEST = "0" * 64


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "corrupt JSON"),
        ("[1, 2]", "a record must be an object, got list"),
        ('{"seq":1}', "missing version 'v'"),
        ('{"v":3,"seq":1}', "unknown version 3"),
        ('{"v":true,"seq":1}', "unknown version True"),
        (f'{{"v":1,"seq":0,"out":"{DIGEST}","event":{{}}}}', "'seq' must be a positive integer, got 0"),
        ('{"v":1,"seq":1,"out":"xyz","event":{}}', "'out' must be a sha256 hex digest"),
        (f'{{"v":1,"seq":1,"out":"{DIGEST}"}}', "missing 'event'"),
        (f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{}},"extra":1}}', "unknown record key(s) extra"),
        (f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"Fly"}}}}', "event: unknown type 'Fly'"),
        (f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"Mute","at":1}}}}', "Mute: missing field(s) session_id"),
        (
            f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"Mute","at":1,"session_id":"s","x":0}}}}',
            "Mute: unknown field(s) x",
        ),
        (
            f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"Mute","at":"1","session_id":"s"}}}}',
            "field 'at': expected an integer",
        ),
        (
            f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"Mute","at":-5,"session_id":"s"}}}}',
            "Mute: Mute.at must be a non-negative int",
        ),
        (
            f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"PublishTrack","at":1,"session_id":"s",'
            '"track_id":"t","kind":"hologram"}}',
            "field 'kind': unknown TrackKind 'hologram'",
        ),
        (f'{{"v":1,"seq":1,"out":"{DIGEST}","event":{{"type":"Mute","at":NaN,"session_id":"s"}}}}', "corrupt JSON"),
    ],
)
def test_decode_errors_name_the_line_and_reason(text: str, reason: str) -> None:
    with pytest.raises(EventLogError) as info:
        decode_record(text, line=12, source="calls.jsonl")
    assert str(info.value).startswith("calls.jsonl:12: ")
    assert reason in str(info.value)
    assert info.value.line == 12 and info.value.source == "calls.jsonl"


def test_decode_lines_numbers_lines_and_checks_order() -> None:
    second = encode_record(make_record(2, PublishTrack(at=2, session_id="s", track_id="t", kind=TrackKind.AUDIO), []))
    records = list(decode_lines([GOOD, "", second], source="f"))
    assert [r.seq for r in records] == [1, 2]
    with pytest.raises(EventLogError, match=r"^f:2: seq 1 out of order, expected 2$"):
        list(decode_lines([GOOD, GOOD], source="f"))


def test_outputs_encode_enums_as_values_and_digest_is_order_sensitive() -> None:
    a = Muted(channel_id="c", session_id="s", by="s")
    b = Muted(channel_id="c", session_id="t", by="s")
    assert encode_output(a) == {"type": "Muted", "channel_id": "c", "session_id": "s", "by": "s"}
    assert decode_output(encode_output(a)) == a
    assert outputs_digest([a, b]) != outputs_digest([b, a])
    assert outputs_digest([]) == "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"  # sha256("[]")
