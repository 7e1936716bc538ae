"""Verified shoppers: a short-lived token the shop's own servers sign for a shopper they signed
in, sent with each chat request in the X-Shopper-Token header.

The token is an HS256 JWT (PyJWT) with `aud` = the shop id, `sub` = the shopper id, `iat` and
`exp`. The secret is per shop and never in the config file (env var or mounted file). Anything
the shopper types (a phone number, "I am user 1001") is never identity: only a token that
verifies is. No token: the shopper is anonymous; a token that does not verify is a 401 with its
own code, so the shop's integration sees what to fix rather than an anonymous answer.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from shop.config import ShopperIdentityConfig

logger = logging.getLogger("cs_assistant.identity")

HEADER = "X-Shopper-Token"
ALGORITHM = "HS256"
# A secret shorter than this is refused: HS256 with a short secret can be brute-forced offline
# from one token (RFC 7518 section 3.2 asks for at least the hash size, 256 bits).
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Shopper:
    """A shopper whose token verified for this shop."""

    shop: str
    id: str
    expires_at: int


class ShopperTokenError(Exception):
    """A token that does not verify; `code` is the API error's code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class SecretSource:
    """The shop's signing secret, from its env var or file; the file is re-read when it changes
    (secret rotation without a restart)."""

    def __init__(self, config: ShopperIdentityConfig, base_dir: Path):
        self._env = config.secret_env
        self._path = None if config.secret_file is None else base_dir / config.secret_file
        self._cached: tuple[float, bytes] | None = None

    def get(self) -> bytes | None:
        """The secret, or None when it is not available (logged)."""
        if self._env is not None:
            value = os.environ.get(self._env, "").encode()
        else:
            try:
                mtime = self._path.stat().st_mtime
                if self._cached is None or self._cached[0] != mtime:
                    self._cached = (mtime, self._path.read_bytes().strip())
                value = self._cached[1]
            except OSError:
                value = b""
        if len(value) < MIN_SECRET_BYTES:
            logger.error("shopper token secret %s is missing or shorter than %d bytes",
                         self._env or self._path, MIN_SECRET_BYTES)
            return None
        return value


class ShopperVerifier:
    """Verifies one shop's shopper tokens."""

    def __init__(self, shop_id: str, config: ShopperIdentityConfig, base_dir: Path):
        self.shop_id = shop_id
        self.config = config
        self.secret = SecretSource(config, base_dir)

    def verify(self, token: str) -> Shopper:
        """The shopper `token` names; ShopperTokenError when it does not verify."""
        secret = self.secret.get()
        if secret is None:
            raise ShopperTokenError(
                "shopper_token_invalid",
                f"The shop '{self.shop_id}' cannot verify shopper tokens now (no signing secret "
                "is configured); the shopper is not signed in.")
        try:
            claims = jwt.decode(
                token, secret, algorithms=[ALGORITHM], audience=self.shop_id,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iat", "sub", "aud"]})
        except jwt.ExpiredSignatureError:
            raise ShopperTokenError("shopper_token_expired",
                                    "The X-Shopper-Token has expired; mint a new one.") from None
        except jwt.InvalidAudienceError:
            raise self._wrong_shop() from None
        except jwt.InvalidTokenError as exc:
            # A token signed for another shop (its secret) fails its signature here; its
            # unverified audience says which mistake it is (nothing in it is trusted).
            if self._claims_other_shop(token):
                raise self._wrong_shop() from None
            raise ShopperTokenError(
                "shopper_token_invalid",
                f"The X-Shopper-Token does not verify ({_reason(exc)}).") from None
        subject, issued, expires = claims["sub"], claims["iat"], claims["exp"]
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise ShopperTokenError("shopper_token_invalid",
                                    "The X-Shopper-Token's sub must be a shopper id (1-128 chars).")
        if not isinstance(issued, int) or expires - issued > self.config.max_ttl_s:
            raise ShopperTokenError(
                "shopper_token_invalid",
                f"The X-Shopper-Token lives longer than this shop allows "
                f"({self.config.max_ttl_s} s from iat to exp).")
        if issued > time.time() + self.config.leeway_s:
            raise ShopperTokenError("shopper_token_invalid",
                                    "The X-Shopper-Token was issued in the future.")
        return Shopper(self.shop_id, subject, int(expires))

    def _wrong_shop(self) -> ShopperTokenError:
        return ShopperTokenError(
            "shopper_token_wrong_shop",
            f"The X-Shopper-Token was not issued for the shop '{self.shop_id}'.")

    def _claims_other_shop(self, token: str) -> bool:
        try:
            audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
        except jwt.InvalidTokenError:
            return False
        return isinstance(audience, str) and audience != self.shop_id

    def mint(self, shopper_id: str, ttl_s: int = 3600) -> str:
        """A token for `shopper_id` (the demo sign-in and scripts/shopper_token.py; a shop's
        servers do the same with their own JWT library)."""
        secret = self.secret.get()
        if secret is None:
            raise ShopperTokenError("shopper_token_invalid",
                                    f"The shop '{self.shop_id}' has no signing secret.")
        return mint_token(secret, self.shop_id, shopper_id, min(ttl_s, self.config.max_ttl_s))


def mint_token(secret: bytes, shop_id: str, shopper_id: str, ttl_s: int,
               now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return jwt.encode({"aud": shop_id, "sub": shopper_id, "iat": issued, "exp": issued + ttl_s},
                      secret, algorithm=ALGORITHM)


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    if isinstance(exc, jwt.DecodeError):
        return "not a JWT"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return f"algorithm must be {ALGORITHM}"
    return type(exc).__name__
