"""The core's STUN binding codec against aioice's encoder (the reference), and against hostile bytes.

What a client's check carries must read the same through both; the success response must be, byte for byte, what
aioice writes for the same transaction, address and password; any other input is refused with ``StunError`` and
its drop reason, never another exception.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

import pytest
from aioice import stun
from callsd.core.wire.stun import (
    StunBindingRequest,
    StunError,
    StunReason,
    binding_success,
    parse_binding_request,
)
from hypothesis import given, settings
from hypothesis import strategies as st

UFRAG = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", min_size=4, max_size=32)
PASSWORD = st.text(min_size=1, max_size=40)
TRANSACTION = st.binary(min_size=12, max_size=12)


def aioice_request(*, server: str, client: str, password: str, transaction: bytes, use_candidate: bool,
                   controlling: bool, tie_breaker: int, priority: int, software: str | None = None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST,
                           transaction_id=transaction)
    if software is not None:
        message.attributes["SOFTWARE"] = software
    message.attributes["USERNAME"] = f"{server}:{client}"
    message.attributes["PRIORITY"] = priority
    message.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = tie_breaker
    if use_candidate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity(password.encode())  # and FINGERPRINT
    return bytes(message)


REQUESTS = st.builds(
    lambda server, client, password, transaction, use_candidate, controlling, tie_breaker, priority, software: (
        aioice_request(server=server, client=client, password=password, transaction=transaction,
                       use_candidate=use_candidate, controlling=controlling, tie_breaker=tie_breaker,
                       priority=priority, software=software), server, client, password, transaction, use_candidate),
    UFRAG, UFRAG, PASSWORD, TRANSACTION, st.booleans(), st.booleans(), st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1), st.none() | st.text(max_size=20))


@given(request=REQUESTS, wrong=PASSWORD)
def test_reads_what_aioice_writes(request: tuple[bytes, str, str, str, bytes, bool], wrong: str) -> None:
    data, server, client, password, transaction, use_candidate = request
    parsed = parse_binding_request(data)
    assert (parsed.local_ufrag, parsed.remote_ufrag) == (server, client)
    assert parsed.username == f"{server}:{client}"
    assert parsed.transaction_id == transaction
    assert parsed.use_candidate is use_candidate
    assert parsed.verify(password.encode())
    assert parsed.verify(wrong.encode()) is (wrong == password)
    reference = stun.parse_message(data)
    assert reference.check_message_integrity(password.encode())


IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)


@given(transaction=TRANSACTION, host=IPV4 | IPV6, port=st.integers(0, 65535), password=PASSWORD)
def test_writes_what_aioice_writes(transaction: bytes, host: str, port: int, password: str) -> None:
    reference = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                             transaction_id=transaction)
    reference.attributes["XOR-MAPPED-ADDRESS"] = (host, port)
    reference.add_message_integrity(password.encode())
    ours = binding_success(transaction, ipaddress.ip_address(host).packed, port, password.encode())
    assert ours == bytes(reference)
    back = stun.parse_message(ours)
    assert back.check_message_integrity(password.encode())
    assert back.attributes["XOR-MAPPED-ADDRESS"] == (host, port)


@settings(max_examples=500)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_stun_error(data: bytes) -> None:
    try:
        parsed = parse_binding_request(data)
    except StunError as exc:
        assert isinstance(exc.reason, StunReason)
    else:
        assert isinstance(parsed, StunBindingRequest)


@given(request=REQUESTS, data=st.data())
def test_any_one_byte_changed_is_refused(request: tuple[bytes, str, str, str, bytes, bool],
                                         data: st.DataObject) -> None:
    """FINGERPRINT (CRC-32) covers every byte before it and detects any change of one byte; a change inside the
    FINGERPRINT itself fails it too. So a damaged check never reaches the HMAC, whatever byte is hit."""
    wire = bytearray(request[0])
    at = data.draw(st.integers(0, len(wire) - 1), label="at")
    wire[at] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(StunError):
        parse_binding_request(bytes(wire))


@given(request=REQUESTS, cut=st.integers(1, 60))
def test_truncated_or_extended_requests_are_malformed(request: tuple[bytes, str, str, str, bytes, bool],
                                                      cut: int) -> None:
    wire = request[0]
    with pytest.raises(StunError) as short:
        parse_binding_request(wire[:-cut])
    assert short.value.reason is StunReason.MALFORMED
    with pytest.raises(StunError) as long:
        parse_binding_request(wire + bytes(cut))
    assert long.value.reason is StunReason.MALFORMED


def _message(kind: int, attributes: list[tuple[int, bytes]], transaction: bytes = bytes(range(12))) -> bytes:
    body = b"".join(struct.pack(">HH", t, len(v)) + v + bytes(-len(v) & 3) for t, v in attributes)
    return struct.pack(">HH", kind, len(body)) + b"\x21\x12\xa4\x42" + transaction + body


def _fingerprinted(message: bytes) -> bytes:
    """``message`` with a valid FINGERPRINT appended."""
    length = int.from_bytes(message[2:4], "big") + 8
    head = message[:2] + length.to_bytes(2, "big") + message[4:]
    return head + struct.pack(">HHI", 0x8028, 4, zlib.crc32(head) ^ 0x5354554E)


@pytest.mark.parametrize(("wire", "reason"), [
    (b"", StunReason.MALFORMED),
    (bytes(19), StunReason.MALFORMED),
    (_message(0x0001, [])[:4] + b"\x00\x00\x00\x00" + bytes(12), StunReason.MALFORMED),  # no magic cookie
    (_message(0x0101, []), StunReason.NOT_BINDING_REQUEST),  # a response
    (_message(0x0011, []), StunReason.NOT_BINDING_REQUEST),  # a binding indication
    (_fingerprinted(_message(0x0001, [])), StunReason.NO_CREDENTIALS),
    (_fingerprinted(_message(0x0001, [(0x0006, b"nocolon"), (0x0008, bytes(20))])), StunReason.NO_CREDENTIALS),
    (_fingerprinted(_message(0x0001, [(0x0006, b"a:b:c"), (0x0008, bytes(20))])), StunReason.NO_CREDENTIALS),
    (_fingerprinted(_message(0x0001, [(0x0006, b"a:b")])), StunReason.NO_CREDENTIALS),  # no MESSAGE-INTEGRITY
    (_message(0x0001, [(0x0006, b"a:b"), (0x0008, bytes(20))]), StunReason.NO_CREDENTIALS),  # no FINGERPRINT
    (_fingerprinted(_message(0x0001, [(0x0006, b"\xff\xfe:b"), (0x0008, bytes(20))])), StunReason.MALFORMED),
    (_fingerprinted(_message(0x0001, [(0x0006, b"a:b"), (0x0008, bytes(16))])), StunReason.MALFORMED),
    (_fingerprinted(_message(0x0001, [(0x0006, b"a:b"), (0x0008, bytes(20))])) + bytes(8), StunReason.MALFORMED),
    (_message(0x0001, [(0x0006, b"a:b"), (0x8028, bytes(4))]), StunReason.MALFORMED),  # a wrong FINGERPRINT
    (_message(0x0001, [(0x0006, b"a:b" + bytes(60))])[:-40], StunReason.MALFORMED),  # overruns, length patched
])
def test_hostile_requests_are_refused_with_their_reason(wire: bytes, reason: StunReason) -> None:
    if reason is StunReason.MALFORMED and len(wire) >= 20 and wire[4:8] == b"\x21\x12\xa4\x42":
        wire = wire[:2] + (len(wire) - 20).to_bytes(2, "big") + wire[4:]  # the header agrees with the datagram
    with pytest.raises(StunError) as refused:
        parse_binding_request(wire)
    assert refused.value.reason is reason


def test_attributes_after_message_integrity_are_not_authenticated() -> None:
    """A USE-CANDIDATE or a second USERNAME slipped in after MESSAGE-INTEGRITY is ignored (RFC 8489 14.5): an
    on-path attacker cannot nominate a pair or rename the request without breaking the HMAC."""
    signed = _message(0x0001, [(0x0006, b"srv:cli")])
    base = parse_binding_request(_fingerprinted(_message(0x0001, [(0x0006, b"srv:cli"), (0x0008, bytes(20)),
                                                                   (0x0025, b""), (0x0006, b"evil:x")])))
    assert base.username == "srv:cli" and base.use_candidate is False
    assert base.signed[4:] == signed[4:]


def test_the_response_refuses_what_the_adapter_got_wrong() -> None:
    with pytest.raises(ValueError):
        binding_success(bytes(11), bytes(4), 1, b"k")
    with pytest.raises(ValueError):
        binding_success(bytes(12), bytes(5), 1, b"k")
    with pytest.raises(ValueError):
        binding_success(bytes(12), bytes(4), 70000, b"k")
