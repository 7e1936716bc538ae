"""Concurrency leases (`RedisLeases`) raced on a real Redis: many replicas' acquirers going for a
key's last free lease at once may all back off, but never take more leases than are free.

Needs only the integration Redis (password-protected, on loopback), not the serving stack.
Each acquirer has its own client and connection pool, as each ingress replica does, and they
start together (`asyncio.gather`), so Redis receives their commands interleaved: an acquire
that read the count and then added its lease in a second step would let several of them win
the same lease in almost every round.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio

from router.access.rate_limits import RedisLeases

pytestmark = pytest.mark.integration
ACQUIRERS = 8  # racing for the last lease each round (as many ingress replicas)
ROUNDS = 200
LIMIT = 3  # concurrent requests of the key; LIMIT - 1 are held before each race
LEASE_TTL_S = 60.0


def test_acquirers_racing_for_the_last_lease_never_both_win(redis_store):
    async def run() -> list[int]:
        options = {"password": redis_store.password}
        racers = [RedisLeases(redis_store.url, options, time.time) for _ in range(ACQUIRERS)]
        raw = redis.asyncio.Redis.from_url(redis_store.url, **options)
        winners_per_round = []
        try:
            for round_ in range(ROUNDS):
                key_id = f"lease-race-{uuid.uuid4().hex[:8]}-{round_}"
                held = [await racers[0].acquire(key_id, LIMIT, LEASE_TTL_S)
                        for _ in range(LIMIT - 1)]
                assert None not in held, "the first LIMIT - 1 leases of an empty key are free"
                leases = await asyncio.gather(
                    *(racer.acquire(key_id, LIMIT, LEASE_TTL_S) for racer in racers))
                won = [lease for lease in leases if lease is not None]
                assert len(won) <= 1, (
                    f"round {round_}: {len(won)} of {ACQUIRERS} acquirers won the one free lease")
                # Losers took their lease back: the key holds exactly the leases handed out.
                members = {m.decode() for m in await raw.zrange(f"cs-leases:{key_id}", 0, -1)}
                assert members == {*held, *won}, f"round {round_}: {members} in Redis"
                # A won lease filled the key; when all backed off, the lease is still free.
                after = await racers[-1].acquire(key_id, LIMIT, LEASE_TTL_S)
                assert (after is None) == bool(won), f"round {round_}: after the race: {after}"
                for lease in [*held, *won, *([after] if after else [])]:
                    await racers[1].release(key_id, lease)
                winners_per_round.append(len(won))
        finally:
            for racer in racers:
                await racer.close()
            await raw.aclose()
        return winners_per_round

    winners_per_round = asyncio.run(run())
    nobody = winners_per_round.count(0)
    print(f"\n[lease race] {ROUNDS} rounds, {ACQUIRERS} acquirers for 1 free lease: "
          f"one winner in {ROUNDS - nobody}, all backed off in {nobody}")
    # Backing off together is allowed, but a lease nobody can ever take would also pass the
    # checks above: most rounds must hand the free lease out.
    assert ROUNDS - nobody >= ROUNDS // 2, winners_per_round
