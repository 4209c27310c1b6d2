"""The media plane's random identifiers come from a pool of ``os.urandom`` bytes (adapters/media/random_pool.py):
each byte handed out once, the draws as wide as asked, and a forked child never repeats its parent's bytes."""

from __future__ import annotations

import os

import pytest
from callsd.adapters.media.random_pool import POOL, RandomPool


def test_each_byte_is_handed_out_once_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[bytes] = []

    def urandom(n: int) -> bytes:
        block = bytes((len(reads) * 7 + i) % 256 for i in range(n))
        reads.append(block)
        return block

    monkeypatch.setattr(os, "urandom", urandom)
    pool = RandomPool()
    drawn = b"".join(pool.take(3) for _ in range(4000))  # 12,000 bytes: three blocks, a draw across each edge
    assert len(drawn) == 12000 and [len(r) for r in reads] == [4096, 4096, 4096]
    assert drawn == reads[0][:4095] + reads[1][:4095] + reads[2][:3810]  # a draw that does not fit takes a new block
    assert len(pool.take(10000)) == 10000  # larger than a block


@pytest.mark.parametrize("bits", [1, 15, 32, 62])
def test_randbits_is_as_wide_as_asked(bits: int) -> None:
    values = {POOL.randbits(bits) for _ in range(2000)}
    assert all(0 <= v < 1 << bits for v in values)
    assert max(values).bit_length() == bits  # the top bit is drawn too
    assert len(POOL.token_hex(16)) == 32


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    POOL.take(1)  # the parent holds unread bytes of a block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next bytes, to the parent
        os.write(write, POOL.take(32))
        os._exit(0)
    os.close(write)
    child = os.read(read, 32)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child != POOL.take(32)


def test_the_hubs_ids_come_from_the_pool_not_one_system_call_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A join's session and call ids were its last two ``getrandom`` calls (docs/performance.md, "Joins, session
    10"): now 300 ids read the OS once, and each is what ``secrets.token_urlsafe(12)`` gives (16 base64url
    characters), prefixed as asked, never repeated."""
    import base64
    import secrets

    from callsd.adapters.signaling import _new_id

    reads: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", urandom)
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n=None: pytest.fail("an id drew its own system call"))
    POOL.reset()
    ids = [_new_id("c") for _ in range(300)]
    assert reads == [4096]  # 300 x 12 bytes: one block
    assert len(set(ids)) == 300
    assert all(i.startswith("c") and len(i) == 17 and len(base64.urlsafe_b64decode(i[1:] + "==")) == 12 for i in ids)
    assert POOL.token_urlsafe(12).replace("-", "").replace("_", "").isalnum()
