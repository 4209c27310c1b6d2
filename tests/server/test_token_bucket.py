"""The per-session rate limiter (adapters/signaling_protocol.TokenBucket) on explicit times: no clock, no sleep."""

from __future__ import annotations

from callsd.adapters.signaling_protocol import TokenBucket


def test_a_burst_then_one_message_per_refill_interval() -> None:
    bucket = TokenBucket(rate=10, burst=100, now=0.0)
    assert all(bucket.allow(0.0) for _ in range(100))  # the burst
    assert not bucket.allow(0.0)
    assert not bucket.allow(0.05)  # half a token
    assert bucket.allow(0.1)  # 10/s: one token per 100 ms
    assert not bucket.allow(0.1)


def test_a_refused_message_costs_nothing_and_the_bucket_never_overfills() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.09)
    assert bucket.allow(0.1)  # the refused attempt at 0.09 did not spend the token that was filling
    assert [bucket.allow(3600.0) for _ in range(4)] == [True, True, True, False]  # capped at the burst

