"""An established DTLS session without OpenSSL's connection still speaks the DTLS its peer expects.

After the handshake `DtlsSession` frees the OpenSSL connection (~93 KiB per session) and keeps `EstablishedRecords`.
The other side of every exchange here is a plain pyOpenSSL connection, so what is checked is interoperability with
OpenSSL's own record layer: its close_notify closes our session, ours makes it see the end of the connection, a
forged alert changes nothing, and a lost final flight is still answered.
"""

from __future__ import annotations

import pytest
from callsd.adapters.media.dtls import Certificate, DtlsError, DtlsSession
from callsd.adapters.media.dtls_records import records
from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL

SERVER_CERT = Certificate.generate()
CLIENT_CERT = Certificate.generate("client")


SUITES = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"]  # Chromium's, OpenSSL's default


def _openssl_client(suite: str | None = None, renegotiating: bool = False) -> SSL.Connection:
    if renegotiating:  # our context refuses renegotiation both ways: the client's own, made here, allows it
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(CLIENT_CERT.cert)
        ctx.use_privatekey(CLIENT_CERT.key)
        ctx.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM")
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
    else:
        ctx = CLIENT_CERT.context()
    ctx.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    if suite is not None:
        ctx.set_cipher_list(suite.encode())
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    conn.set_ciphertext_mtu(1200)
    return conn


def _drain(conn: SSL.Connection) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            return out
        if not chunk:
            return out
        out.append(chunk)


def _step(conn: SSL.Connection) -> bool:
    """One handshake step of the OpenSSL side; True once its handshake is complete."""
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return False
    return True


def _handshake(*, lose_final_flight: bool = False, suite: str | None = None,
               renegotiating_client: bool = False) -> tuple[DtlsSession, SSL.Connection]:
    """A full handshake; with ``lose_final_flight`` the server's CCS + Finished are dropped once and the client's
    last flight reaches the server a second time, as the client's retransmission timer would send it."""
    server = DtlsSession(SERVER_CERT.context(), server=True, remote_fingerprint=CLIENT_CERT.fingerprint)
    client = _openssl_client(suite, renegotiating_client)
    _step(client)
    for _ in range(20):
        sent = _drain(client)
        for d in sent:
            server.feed(d)
        flight = server.take_datagrams()
        if server.done and lose_final_flight:
            lose_final_flight = False
            for d in sent:
                server.feed(d)
            again = server.take_datagrams()
            assert again == flight, "the retransmitted client flight is answered with the same last flight"
        for d in flight:
            client.bio_write(d)
        if _step(client) and server.done:
            return server, client
    raise AssertionError("handshake did not complete")


def test_the_connection_is_freed_once_the_keys_are_exported() -> None:
    server, _ = _handshake()
    assert server.keys is not None and not server.holds_openssl_connection


def test_another_suite_keeps_the_openssl_connection() -> None:
    server, client = _handshake(suite="ECDHE-ECDSA-CHACHA20-POLY1305")
    assert server.keys is not None and server.holds_openssl_connection
    client.shutdown()
    (alert,) = _drain(client)
    with pytest.raises(DtlsError):
        server.feed(alert)
    assert server.failed == "dtls_closed"


@pytest.mark.parametrize("suite", SUITES)
def test_openssl_close_notify_closes_the_session(suite: str) -> None:
    server, client = _handshake(suite=suite)
    assert client.get_cipher_name() == suite and not server.holds_openssl_connection
    client.shutdown()
    (alert,) = _drain(client)
    with pytest.raises(DtlsError):
        server.feed(alert)
    assert server.failed == "dtls_closed"


@pytest.mark.parametrize("suite", SUITES)
def test_our_close_notify_ends_the_openssl_connection(suite: str) -> None:
    server, client = _handshake(suite=suite)
    server.close()
    (alert,) = server.take_datagrams()
    client.bio_write(alert)
    with pytest.raises(SSL.ZeroReturnError):
        client.recv(1500)


def test_application_data_and_a_forged_alert_change_nothing() -> None:
    server, client = _handshake()
    client.send(b"hello")
    (data,) = _drain(client)
    assert server.feed(data) is False
    client.shutdown()
    (alert,) = _drain(client)
    forged = alert[:-1] + bytes([alert[-1] ^ 1])
    assert server.feed(forged) is False
    assert server.failed is None and server.take_datagrams() == []
    with pytest.raises(DtlsError):
        server.feed(alert)


def test_a_lost_final_flight_is_sent_again() -> None:
    server, client = _handshake(lose_final_flight=True)
    assert not server.holds_openssl_connection
    client.send(b"x")  # the keys agree: OpenSSL's record opens ours and ours opens OpenSSL's
    server.close()
    (alert,) = server.take_datagrams()
    assert [(t, e) for t, e, _, _ in records(alert)] == [(21, 1)]
    client.bio_write(alert)
    with pytest.raises(SSL.ZeroReturnError):
        client.recv(1500)


_ESTABLISHED, _ = _handshake()


@given(st.lists(st.tuples(st.sampled_from([20, 21, 22, 23, 0, 255]), st.integers(0, 2), st.binary(max_size=64)),
                max_size=4), st.binary(max_size=16))
def test_hostile_datagrams_after_the_handshake_are_ignored(recs: list[tuple[int, int, bytes]], tail: bytes) -> None:
    """Whatever arrives that is not an authentic alert: no exception, no state change, at most the bounded repeats
    of the last flight."""
    datagram = b"".join(bytes([t]) + b"\xfe\xfd" + e.to_bytes(2, "big") + bytes(6) + len(body).to_bytes(2, "big")
                        + body for t, e, body in recs) + tail
    assert _ESTABLISHED.feed(datagram) is False
    assert _ESTABLISHED.failed is None
    _ESTABLISHED.take_datagrams()


def _plain_record(content_type: int, body: bytes) -> bytes:
    """An unprotected (epoch 0) DTLS 1.2 record: what anyone who knows the 5-tuple can send."""
    return bytes([content_type]) + b"\xfe\xfd" + bytes(8) + len(body).to_bytes(2, "big") + body


def test_an_unprotected_alert_does_not_end_the_session() -> None:
    """Only an authenticated epoch-1 alert ends a session: a spoofed plaintext close_notify or fatal alert does not."""
    server, _client = _handshake()
    for body in (b"\x01\x00", b"\x02\x28", b"\x02\x00"):
        assert server.feed(_plain_record(21, body)) is False
    assert server.failed is None


def test_the_last_flight_is_repeated_a_bounded_number_of_times() -> None:
    """A peer's retransmitted final flight gets ours again, but a stream of such records is not a reflector."""
    server, _client = _handshake()
    flights = 0
    for _ in range(50):
        server.feed(_plain_record(20, b"\x01"))  # change_cipher_spec: the start of a peer's final flight
        flights += bool(server.take_datagrams())
    assert 1 <= flights <= 8


def _ticket_client() -> SSL.Connection:
    """A client that asks for a session ticket (OpenSSL's default, and what a browser's ClientHello carries)."""
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(CLIENT_CERT.cert)
    ctx.use_privatekey(CLIENT_CERT.key)
    ctx.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM")
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    conn.set_ciphertext_mtu(1200)
    return conn


def test_the_server_issues_no_session_ticket() -> None:
    """WebRTC never resumes a DTLS session: a ticket would be a wasted encryption and record per handshake. A
    NewSessionTicket (handshake type 4) goes out in epoch 0, before the server's ChangeCipherSpec."""
    server = DtlsSession(SERVER_CERT.context(), server=True, remote_fingerprint=CLIENT_CERT.fingerprint)
    client = _ticket_client()
    _step(client)
    server_records = []
    for _ in range(20):
        for d in _drain(client):
            server.feed(d)
        for d in server.take_datagrams():
            server_records += records(d)
            client.bio_write(d)
        if _step(client) and server.done:
            break
    assert server.keys is not None
    handshake_types = [body[13] for kind, epoch, _, body in server_records if kind == 22 and epoch == 0]
    assert handshake_types and 4 not in handshake_types, handshake_types


def test_the_record_keys_are_derived_only_when_a_record_needs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A join pays no key block and no AES-GCM contexts (issue 13 part 2): the secrets are kept and the keys derived
    the first time a record is sealed or opened, once."""
    from callsd.adapters.media import dtls_records

    derived: list[str] = []
    derive = dtls_records.EstablishedRecords.derive

    def counting(**kw: object) -> dtls_records.EstablishedRecords | None:
        derived.append(str(kw["cipher_name"]))
        return derive(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(dtls_records.EstablishedRecords, "derive", staticmethod(counting))
    server, client = _handshake(lose_final_flight=True)  # the repeated final flight needs no keys either
    assert server.keys is not None and not server.holds_openssl_connection and derived == []
    client.send(b"x")
    (data,) = _drain(client)
    assert server.feed(data) is False and derived == []  # application data is not opened
    server.close()
    (alert,) = server.take_datagrams()
    assert len(derived) == 1
    client.bio_write(alert)
    with pytest.raises(SSL.ZeroReturnError):
        client.recv(1500)


def test_the_peer_certificate_is_hashed_once_and_a_stranger_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenSSL asks the verify callback twice about the one certificate; the second answer comes from the first."""
    from callsd.adapters.media import dtls

    hashed: list[bytes] = []
    fingerprint_of_der = dtls._fingerprint_of_der

    def counting(der: bytes) -> str:
        hashed.append(der)
        return fingerprint_of_der(der)

    monkeypatch.setattr(dtls, "_fingerprint_of_der", counting)
    server, _ = _handshake()
    assert server.done and len(hashed) == 1
    stranger = DtlsSession(SERVER_CERT.context(), server=True, remote_fingerprint=SERVER_CERT.fingerprint)
    client = _openssl_client()
    _step(client)
    with pytest.raises(DtlsError):
        for _ in range(10):
            for d in _drain(client):
                stranger.feed(d)
            for d in stranger.take_datagrams():
                client.bio_write(d)
            _step(client)
    assert stranger.failed == "fingerprint_mismatch" and stranger.keys is None


def test_a_renegotiation_is_refused() -> None:
    """No WebRTC peer renegotiates DTLS; with the connection kept (a suite `dtls_records` does not handle), a
    client's new ClientHello is answered with an alert and no handshake, so the one certificate verified is the
    only one (the verify callback's memo relies on it; OpenSSL 3+ refuses by default, ``OP_NO_RENEGOTIATION`` says
    so explicitly)."""
    server, client = _handshake(suite="ECDHE-ECDSA-CHACHA20-POLY1305", renegotiating_client=True)
    assert server.holds_openssl_connection
    assert client.renegotiate()
    _step(client)
    (hello,) = _drain(client)
    assert [(t, e) for t, e, _, _ in records(hello)] == [(22, 1)]  # the new ClientHello, under the epoch-1 keys
    server.feed(hello)
    answer = server.take_datagrams()
    assert [(t, e) for d in answer for t, e, _, _ in records(d)] == [(21, 1)]  # an alert, no ServerHello
    for d in answer:
        client.bio_write(d)
    with pytest.raises(SSL.Error, match="no renegotiation"):
        _step(client)
    assert server.failed is None and server.keys is not None
