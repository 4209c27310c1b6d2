"""The native sender's AEAD_AES_128_GCM transform (adapters/media/native/srtp_transform.h, OpenSSL) against libsrtp2:
the same packets, in the same order, protect to the same bytes, and fail where libsrtp fails.

Streams mix several SSRCs, CSRCs and header extensions, sequence numbers that wrap (the rollover counter), jumps,
retransmissions of old packets (inside the 1024-packet window: accepted as repeats; beyond it: refused as too old)
and malformed headers. The reference is pylibsrtp (libsrtp2 with OpenSSL, what the Python path uses); the native
receiver decrypts every protected packet as well (test_native_srtp_diff.py compares the receive side call by call).
"""

from __future__ import annotations

import os
import struct

import pylibsrtp
from callsd.adapters.media.native.path import SrtpSession
from hypothesis import given, settings
from hypothesis import strategies as st

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def _reference(key: bytes) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILE)
    policy.window_size = 1024
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


def _packet(ssrc: int, seq: int, csrcs: int, ext_words: int, payload: int, malformed: bool) -> bytes:
    first = 0x80 | csrcs | (0x10 if ext_words >= 0 else 0)
    head = struct.pack("!BBHII", first, 111, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF, ssrc)
    head += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if ext_words >= 0:
        head += struct.pack("!HH", 0xBEDE, ext_words) + bytes(range(4 * ext_words))
    body = bytes((i * 7) & 0xFF for i in range(payload))
    packet = head + body
    return packet[: max(0, len(head) - 3)] if malformed else packet


step = st.tuples(
    st.sampled_from([0x1111, 0x2222, 0xDEADBEEF]),  # ssrc
    st.one_of(st.integers(1, 3), st.integers(-40, -1), st.integers(1000, 40000), st.integers(-2000, -1000)),
    st.integers(0, 2),  # csrcs
    st.integers(-1, 3),  # extension words (-1: none)
    st.integers(0, 200),  # payload bytes
    st.booleans().map(lambda b: b and os.urandom(1)[0] < 16),  # now and then, a truncated header
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=120), st.integers(0, 0xFFFF))
def test_protect_matches_libsrtp(steps: list[tuple[int, int, int, int, int, bool]], start: int) -> None:
    key = os.urandom(28)
    ours = SrtpSession(int(PROFILE), key, True)
    reference = _reference(key)
    receiver = SrtpSession(int(PROFILE), key, False)
    seqs: dict[int, int] = {}
    for ssrc, jump, csrcs, ext, payload, malformed in steps:
        seq = seqs.get(ssrc, start) + jump
        seqs[ssrc] = max(seqs.get(ssrc, start), seq) if jump > 0 else seqs.get(ssrc, start)
        plain = _packet(ssrc, seq, csrcs, ext, payload, malformed)
        try:
            expected: bytes | None = reference.protect(plain)
        except pylibsrtp.Error:
            expected = None
        got = ours.protect(plain)
        assert got == expected, (hex(ssrc), seq & 0xFFFF, jump, csrcs, ext, payload, malformed)
        if got is not None:
            assert receiver.unprotect(got) in (plain, None)  # None: a repeat the receiver's window refuses


def test_rollover_counter_over_a_long_stream() -> None:
    key = os.urandom(28)
    ours, reference = SrtpSession(int(PROFILE), key, True), _reference(key)
    for n in range(0xFFF0, 0x10000 * 2 + 40, 97):  # two wraps of the sequence number
        plain = _packet(0x42, n, 0, 1, 160, False)
        assert ours.protect(plain) == reference.protect(plain), n


def test_gcm_takes_its_iv_as_a_parameter_on_openssl_3() -> None:
    """The cheaper way to set a GCM packet's IV (srtp_keys.h: no IV-length query per packet) is chosen at start only
    when it gives the same bytes as EVP_CipherInit_ex; on this machine's OpenSSL 3 it must be, or a change lost
    ~500 instructions per egress packet without a test noticing (the differential tests pass either way)."""
    import ssl

    from callsd.adapters.media.native import _engine

    assert ssl.OPENSSL_VERSION_INFO[0] == 3, ssl.OPENSSL_VERSION
    assert _engine.GCM_IV_AS_PARAMETER == 1



def test_gcm_runs_through_the_method_table_on_openssl_3() -> None:
    """AES-128-GCM goes through libcrypto's method table, not the 3.0 provider's parameter exchanges (srtp_keys.h
    srtp_gcm_method, ADR 0054), when its self-check passes; on this machine it must, or a change lost ~900
    instructions per egress packet without a test noticing (the differential tests pass either way)."""
    from callsd.adapters.media.native import _engine

    assert _engine.GCM_METHOD_TABLE == 1


_PROVIDER_SIDE = """
import sys
from callsd.adapters.media.native import _engine
assert _engine.GCM_METHOD_TABLE == 0
key = bytes.fromhex(sys.argv[1])
tx = _engine.SrtpSession(7, key, True)
rx = _engine.SrtpSession(7, key, False)
for line in sys.stdin:
    kind, data = line.split()
    packet = bytes.fromhex(data)
    out = tx.protect(packet) if kind == "p" else rx.unprotect(packet)
    print("-" if out is None else out.hex(), flush=True)
"""


def test_method_table_and_provider_give_the_same_bytes() -> None:
    """The same packets through both ways of driving GCM (this process: the method table; a child with
    CALLSD_NATIVE_GCM_METHOD=0: the provider) protect to the same bytes, and each side opens the other's packets and
    refuses a forged tag the same way: the fallback stays a tested path."""
    import subprocess
    import sys

    key = os.urandom(28)
    ours_tx, ours_rx = SrtpSession(int(PROFILE), key, True), SrtpSession(int(PROFILE), key, False)
    lines, expected = [], []
    for n in range(200):
        plain = _packet(0x1111 + n % 3, 7 * n, n % 2, (n % 4) - 1, (n * 13) % 201, False)
        sealed = ours_tx.protect(plain)
        assert sealed is not None
        forged = bytearray(sealed)
        forged[-1] ^= 0x40
        lines += [f"p {plain.hex()}", f"u {sealed.hex()}", f"u {bytes(forged).hex()}"]
        expected += [sealed.hex(), plain.hex(), "-"]
    env = dict(os.environ, CALLSD_NATIVE_GCM_METHOD="0")
    run = subprocess.run([sys.executable, "-c", _PROVIDER_SIDE, key.hex()], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    assert run.stdout.split() == expected
    for n in range(0, len(lines), 3):  # and the method table opens what the provider sealed (the same bytes)
        assert ours_rx.unprotect(bytes.fromhex(expected[n])) == bytes.fromhex(lines[n][2:])
