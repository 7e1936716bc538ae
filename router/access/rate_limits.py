"""Per-key rate limits: requests per minute, tokens per minute, concurrent requests.

Counting is the `limits` package's, in memory (one ingress replica) or in Redis
(`access.rate_limit_store`), so every ingress replica sees the same counters:
- requests: a sliding-window counter, checked and counted in one atomic step (a Lua script in
  Redis), so replicas racing for a key's last request cannot both win;
- tokens: prompt + completion tokens are known only when an answer ends, so they are charged
  then, into fixed one-minute windows (a fixed window records every charge; the sliding window
  would drop a charge that overshoots). A key is admitted while its window has tokens left, so it
  can overshoot by what its requests already in flight consume; docs/api.md "Per-key limits"
  gives that bound;
- concurrent requests: not a rate, so not in `limits`; each open request holds a lease (a sorted
  set member in Redis whose score is its expiry), so a lease left by a replica that died expires
  by itself instead of blocking the key forever.

Every response to a limited key carries OpenAI's `x-ratelimit-*` headers. When the store fails,
requests are served (fail open: the model pools keep their own queue bounds and 429s) and the
failure is logged and counted; on the busiest day a Redis hiccup must not refuse every shopper.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from configs.schema import AccessConfig
from router.access.api_keys import Caller
from router.api.errors import APIError, ErrorKind

logger = logging.getLogger("cs_assistant.access")

Clock = Callable[[], float]
# Kinds of limit: the `limit` label of the rate-limit metrics.
REQUESTS, TOKENS, CONCURRENCY = "requests", "tokens", "concurrency"
LIMIT_KINDS = (REQUESTS, TOKENS, CONCURRENCY)
STORE_ERROR_LOG_EVERY_S = 60.0


def store_options(config: AccessConfig, environ: Mapping[str, str] = os.environ) -> dict:
    """Keyword arguments of the Redis client: the call bounds and, when the config names an
    environment variable for it, the password. Raises when that variable is missing, so a
    replica refuses to start instead of failing open on every request."""
    options: dict = dict(socket_timeout=config.store_timeout_s,
                         socket_connect_timeout=config.store_timeout_s)
    name = config.rate_limit_store_password_env
    if name:
        if not environ.get(name):
            raise RuntimeError(
                f"access.rate_limit_store_password_env names {name}, which is not set (or "
                f"empty) in this ingress replica's environment; set it where Ray starts "
                f"(docs/api.md \"Per-key limits\")")
        options["password"] = environ[name]
    return options


def openai_duration(seconds: float) -> str:
    """A reset time as OpenAI writes it: '20ms', '1.5s', '6m0s'."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass
class LimitGrant:
    """What the rate limiter granted one request: the headers its response carries, and what
    it must give back (its concurrency lease, its tokens)."""

    caller: Caller
    headers: dict[str, str] = field(default_factory=dict)
    lease: str | None = None
    settled: bool = False


class RateLimiter:
    """The limits of every key, for one ingress replica (counters shared through the store)."""

    def __init__(self, config: AccessConfig, lease_ttl_s: float,
                 on_limited: Callable[[str, str], None] = lambda key_id, limit: None,
                 on_store_error: Callable[[], None] = lambda: None,
                 clock: Clock = time.time):
        self._clock = clock
        self._lease_ttl_s = lease_ttl_s
        self._on_limited = on_limited
        self._on_store_error = on_store_error
        self._last_error_log = -math.inf
        self._config = config
        self._store_options = store_options(config) if config.rate_limit_store else {}
        self._requests: SlidingWindowCounterRateLimiter | None = None
        self._tokens: FixedWindowRateLimiter | None = None
        self._leases: Leases | None = None

    def _connect(self) -> None:
        """Create the store on first use, inside the serving event loop (the in-memory store
        starts an expiry task on the loop it is created in)."""
        config = self._config
        if config.rate_limit_store:
            options = self._store_options
            storage = RedisStorage("async+" + config.rate_limit_store, implementation="redispy",
                                   wrap_exceptions=True, key_prefix="cs-limits", **options)
            self._leases = RedisLeases(config.rate_limit_store, options, self._clock)
        else:
            storage = MemoryStorage()
            self._leases = MemoryLeases(self._clock)
        self._requests = SlidingWindowCounterRateLimiter(storage)
        self._tokens = FixedWindowRateLimiter(storage)

    async def admit(self, caller: Caller, chat: bool) -> LimitGrant:
        """Let a request in or raise a 429 with Retry-After. `chat` requests also need tokens
        left and a concurrency slot; other /v1 calls count as requests only."""
        grant = LimitGrant(caller)
        limits = caller.limits
        if self._leases is None:
            self._connect()
        try:
            if chat and limits.tokens_per_minute:
                await self._check_tokens(grant, limits.tokens_per_minute)
            if chat and limits.concurrent_requests:
                grant.lease = await self._leases.acquire(
                    caller.key_id, limits.concurrent_requests, self._lease_ttl_s)
                if grant.lease is None:
                    self._refuse(grant, CONCURRENCY,
                                 f"{limits.concurrent_requests} concurrent requests", 1)
            if limits.requests_per_minute:
                await self._count_request(grant, limits.requests_per_minute)
        except APIError:
            await self.release(grant)
            raise
        except Exception:  # noqa: BLE001 - a failing store must not refuse shoppers
            self._store_failed()
            grant.headers.clear()
        return grant

    async def _check_tokens(self, grant: LimitGrant, per_minute: int) -> None:
        item = RateLimitItemPerMinute(per_minute)
        reset_at, remaining = await self._tokens.get_window_stats(item, TOKENS,
                                                                  grant.caller.key_id)
        reset_in = max(0.0, reset_at - self._clock()) if remaining < per_minute else 0.0
        _report(grant, TOKENS, per_minute, remaining, reset_in)
        if remaining <= 0:
            self._refuse(grant, TOKENS, f"{per_minute} tokens per minute", reset_in)

    async def _count_request(self, grant: LimitGrant, per_minute: int) -> None:
        item = RateLimitItemPerMinute(per_minute)
        key_id = grant.caller.key_id
        allowed = await self._requests.hit(item, REQUESTS, key_id)
        reset_at, remaining = await self._requests.get_window_stats(item, REQUESTS, key_id)
        reset_in = max(0.0, reset_at - self._clock())
        _report(grant, REQUESTS, per_minute, remaining, reset_in)
        if not allowed:
            self._refuse(grant, REQUESTS, f"{per_minute} requests per minute", reset_in)

    def _refuse(self, grant: LimitGrant, kind: str, limit: str, retry_in_s: float) -> None:
        self._on_limited(grant.caller.key_id, kind)
        raise APIError.of(ErrorKind.RATE_LIMITED, headers=grant.headers, limit=limit,
                          retry_after_s=max(1, math.ceil(retry_in_s)))

    async def settle(self, grant: LimitGrant, tokens: int) -> None:
        """The request ended: charge its tokens and free its concurrency slot (once)."""
        if grant.settled:
            return
        grant.settled = True
        per_minute = grant.caller.limits.tokens_per_minute
        try:
            if per_minute and tokens > 0:
                await self._tokens.hit(RateLimitItemPerMinute(per_minute), TOKENS,
                                       grant.caller.key_id, cost=tokens)
        except Exception:  # noqa: BLE001 - see admit()
            self._store_failed()
        await self.release(grant)

    async def release(self, grant: LimitGrant) -> None:
        if grant.lease is None:
            return
        lease, grant.lease = grant.lease, None
        try:
            await self._leases.release(grant.caller.key_id, lease)
        except Exception:  # noqa: BLE001 - the lease expires by itself
            self._store_failed()

    def _store_failed(self) -> None:
        self._on_store_error()
        now = time.monotonic()
        if now - self._last_error_log >= STORE_ERROR_LOG_EVERY_S:
            self._last_error_log = now
            logger.warning("rate-limit store failed; serving without limits until it answers",
                           exc_info=True)


def _report(grant: LimitGrant, kind: str, limit: int, remaining: int,
            reset_in_s: float) -> None:
    """OpenAI's header trio for one limit (`kind`: requests or tokens)."""
    grant.headers.update({
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(remaining),
        f"x-ratelimit-reset-{kind}": openai_duration(reset_in_s),
    })


class Leases:
    """Concurrency slots of each key."""

    async def acquire(self, key_id: str, limit: int, ttl_s: float) -> str | None:
        raise NotImplementedError

    async def release(self, key_id: str, lease: str) -> None:
        raise NotImplementedError


class MemoryLeases(Leases):
    def __init__(self, clock: Clock):
        self._clock = clock
        self._held: dict[str, dict[str, float]] = {}

    async def acquire(self, key_id: str, limit: int, ttl_s: float) -> str | None:
        now = self._clock()
        held = self._held.setdefault(key_id, {})
        for lease, expires in list(held.items()):
            if expires <= now:
                del held[lease]
        if len(held) >= limit:
            return None
        lease = uuid.uuid4().hex
        held[lease] = now + ttl_s
        return lease

    async def release(self, key_id: str, lease: str) -> None:
        self._held.get(key_id, {}).pop(lease, None)


class RedisLeases(Leases):
    """Leases in a sorted set per key (member: lease id, score: expiry). Add-then-count in one
    transaction: two replicas racing for the last slot may both back off, never both win."""

    def __init__(self, url: str, options: dict, clock: Clock):
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(url, **options)
        self._clock = clock

    @staticmethod
    def _key(key_id: str) -> str:
        return f"cs-leases:{key_id}"

    async def acquire(self, key_id: str, limit: int, ttl_s: float) -> str | None:
        now, lease, key = self._clock(), uuid.uuid4().hex, self._key(key_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {lease: now + ttl_s})
            pipe.zcard(key)
            pipe.expire(key, math.ceil(ttl_s))
            _, _, count, _ = await pipe.execute()
        if count > limit:
            await self._redis.zrem(key, lease)
            return None
        return lease

    async def release(self, key_id: str, lease: str) -> None:
        await asyncio.shield(self._redis.zrem(self._key(key_id), lease))

    async def close(self) -> None:
        """Close the connection pool (tests, tools; a replica's ends with its process)."""
        await self._redis.aclose()
