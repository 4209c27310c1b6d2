"""A retried rtcd login does not pay a second Argon2id hash (app/rtcd_auth.py, ``ClientStore.verify``).

A login whose client timed out still finishes its hash in its thread; the retry must wait for that hash and reuse
its verdict, while a wrong key, an unknown client and a changed registration still pay (or fail) in full.
"""

from __future__ import annotations

import threading
from pathlib import Path

from argon2 import PasswordHasher
from callsd.app.rtcd_auth import ClientStore

KEY = "k" * 40


class CountingHasher(PasswordHasher):
    """Argon2id as ClientStore uses it, counting the verifications it actually ran."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 - argon2's own name
        self.entered.set()
        self.gate.wait(10)
        self.verified += 1
        return super().verify(hash, password)


def store(tmp_path: Path) -> tuple[ClientStore, CountingHasher]:
    clients = ClientStore(tmp_path)
    hasher = CountingHasher()
    clients._hasher = hasher  # noqa: SLF001 - the count is what this test is about
    return clients, hasher


def test_a_verified_key_is_not_hashed_again(tmp_path: Path) -> None:
    clients, hasher = store(tmp_path)
    assert clients.register("serve-1", KEY)
    assert clients.verify("serve-1", KEY) and hasher.verified == 1
    assert clients.verify("serve-1", KEY) and hasher.verified == 1
    assert not clients.verify("serve-1", "w" * 40) and hasher.verified == 2  # a wrong key pays in full
    assert not clients.verify("nobody", KEY) and hasher.verified == 3  # so does an unknown client
    assert clients.verify("serve-1", KEY) and hasher.verified == 3


def test_a_new_registration_forgets_the_old_key(tmp_path: Path) -> None:
    clients, hasher = store(tmp_path)
    assert clients.register("serve-1", KEY) and clients.verify("serve-1", KEY)
    assert clients.unregister("serve-1")
    assert not clients.verify("serve-1", KEY)
    assert clients.register("serve-1", "n" * 40)
    assert not clients.verify("serve-1", KEY)
    assert clients.verify("serve-1", "n" * 40)


def test_a_retry_during_the_abandoned_hash_waits_for_it(tmp_path: Path) -> None:
    clients, hasher = store(tmp_path)
    assert clients.register("serve-1", KEY)
    hasher.gate.clear()  # the first login's hash is slow: its client gives up and retries meanwhile
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(clients.verify("serve-1", KEY))) for _ in range(3)]
    threads[0].start()
    assert hasher.entered.wait(10)  # the first login is inside its hash
    for thread in threads[1:]:
        thread.start()
    hasher.gate.set()
    for thread in threads:
        thread.join(30)
    assert results == [True, True, True]
    assert hasher.verified == 1
