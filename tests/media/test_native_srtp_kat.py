"""Known-answer tests of the native SRTP on libcrypto (adapters/media/native/srtp_keys.h, srtp_transform.h) with the
RFCs' own test vectors: the key derivation of RFC 3711 B.3, the AES-CM keystream of RFC 3711 B.2, and the
AEAD_AES_128_GCM packets of RFC 7714 §16.1 (SRTP) and §17.1 / §17.3 (SRTCP, encrypted and authenticated only).

The RFC 7714 vectors start from session keys, not a master key, so those sessions are built with ``derive=False``.
"""

from __future__ import annotations

from callsd.adapters.media.native._engine import kdf
from callsd.adapters.media.native.path import SrtpSession

GCM, CM = 7, 1  # libsrtp's profile ids


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def test_kdf_rfc3711_b3() -> None:
    key, salt = h("E1F97A0D3E018BE0D64FA32C06DE4139"), h("0EC675AD498AFEEBB6960B3AABE6")
    assert kdf(key, salt, 0, 16) == h("C61E7A93744F39EE10734AFE3FF7A087")  # cipher key
    assert kdf(key, salt, 2, 14) == h("30CBBC08863D8C85D49DB34A9AE1")  # cipher salt
    assert kdf(key, salt, 1, 94) == h(  # authentication key (the RFC derives 94 octets)
        "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE"
        "E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25"
        "6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2")


def test_aes_cm_keystream_rfc3711_b2() -> None:
    """SSRC 0, index 0: the counter block is the session salt shifted by 16 bits, so a zero payload encrypts to
    the keystream itself."""
    material = h("2B7E151628AED2A6ABF7158809CF4F3C") + h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD") + bytes(20)
    session = SrtpSession(CM, material, True, derive=False)
    header = bytes([0x80, 0, 0, 0]) + bytes(8)  # sequence 0, SSRC 0
    wire = session.protect(header + bytes(48))
    assert wire is not None
    assert wire[12:60] == h("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB"
                            "41E95B3BB0A2E8DD477901E4FCA894C0")
    assert len(wire) == 60 + 10  # HMAC-SHA1-80


RFC7714_KEY = h("000102030405060708090a0b0c0d0e0f") + h("517569642070726f2071756f")
RFC7714_RTP = h("8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976 69736120 696e2070"
                "61727465 73207472 6573")
RFC7714_RTCP = h("81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61"
                 "deadbeef deadbeef deadbeef deadbeef deadbeef")


def test_gcm_srtp_rfc7714_16_1() -> None:
    want = h("8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f 42a5f47a"
             "51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce")
    assert SrtpSession(GCM, RFC7714_KEY, True, derive=False).protect(RFC7714_RTP) == want
    receiver = SrtpSession(GCM, RFC7714_KEY, False, derive=False)
    assert receiver.unprotect(want) == RFC7714_RTP
    assert receiver.unprotect(want) is None and receiver.last_error == 9  # replayed
    forged = want[:20] + bytes([want[20] ^ 1]) + want[21:]
    assert SrtpSession(GCM, RFC7714_KEY, False, derive=False).unprotect(forged) is None


def test_gcm_srtcp_rfc7714_17_1_encrypted() -> None:
    wire = h("81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1 730d6fda"
             "4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4")  # SRTCP index 0x5d4
    receiver = SrtpSession(GCM, RFC7714_KEY, False, derive=False)
    assert receiver.unprotect_rtcp(wire) == RFC7714_RTCP
    assert receiver.unprotect_rtcp(wire) is None and receiver.last_error == 9


def test_gcm_srtcp_rfc7714_17_3_authenticated_only() -> None:
    wire = RFC7714_RTCP + h("841dd968 3dd78ec9 2ae58790 125f62b3 000005d4")  # E flag clear
    assert SrtpSession(GCM, RFC7714_KEY, False, derive=False).unprotect_rtcp(wire) == RFC7714_RTCP
    tampered = wire[:9] + b"X" + wire[10:]
    receiver = SrtpSession(GCM, RFC7714_KEY, False, derive=False)
    assert receiver.unprotect_rtcp(tampered) is None and receiver.last_error == 7
