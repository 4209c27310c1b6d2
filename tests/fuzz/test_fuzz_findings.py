"""What the fuzz targets found, kept fixed by plain tests (the crashers also stay in fuzz/corpus/<target>/crash-*,
which every bounded run replays first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from callsd.adapters.media.dtls import Certificate, DtlsSession
from callsd.app.auth import TokenError, create_token, verify_token


def test_an_empty_datagram_is_ignored_by_dtls_and_the_handshake_still_completes() -> None:
    server_cert, client_cert = Certificate.generate("server"), Certificate.generate("client")
    server = DtlsSession(server_cert.context(), server=True, remote_fingerprint=client_cert.fingerprint)
    client = DtlsSession(client_cert.context(), server=False, remote_fingerprint=server_cert.fingerprint)
    assert server.feed(b"") is False  # raised OpenSSL's WantReadError before
    client.start()
    done = False
    for _ in range(10):
        for datagram in client.take_datagrams():
            done = server.feed(datagram) or done
            server.feed(b"")
        for datagram in server.take_datagrams():
            client.feed(datagram)
        if done and client.done:
            break
    assert server.done and client.done and server.keys is not None


@pytest.mark.parametrize("token", ["v1.é.AAAA", "v1.\udcea.AAAA", "v1.eyJ1IjoiYSJ9.\u00e9\u00e9"])
def test_a_non_ascii_token_is_unauthorized_not_an_internal_error(token: str) -> None:
    with pytest.raises(TokenError) as info:  # raised UnicodeEncodeError before: a 500 and a traceback per request
        verify_token(token, secret="s" * 20, now=0)
    assert info.value.code == "unauthorized"
    good = create_token(secret="s" * 20, user_id="u", channels=["c"], expires_at=10)
    assert verify_token(good, secret="s" * 20, now=0).user_id == "u"


@pytest.mark.parametrize("header", ["Basic \u00e9\u00e9==", "Basic dXNlcjpw\u00ff", "Bearer v1.YQ.1900000000.\u00e9"])
def test_an_rtcd_credential_with_a_latin_1_byte_is_unauthorized_not_an_internal_error(header: str,
                                                                                      tmp_path: Path) -> None:
    """Found by the rtcd fuzz target: base64 and compare_digest raised on non-ASCII text (a 500 before auth)."""
    from callsd.app.rtcd_api import _basic, _bearer
    from callsd.app.rtcd_auth import BearerTokens

    tokens = BearerTokens(tmp_path, ttl_seconds=60)
    assert _basic(header) is None
    bearer = _bearer(header)
    assert bearer is None or tokens.check(bearer, now=0) is None
    token, _ = tokens.issue("client-1", now=0)
    assert tokens.check(token, now=1) is not None
