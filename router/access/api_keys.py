"""API keys: who is calling, which shops they may use, and what they may send.

Keys live in a YAML file outside the Serve config (a mounted secret in production), as SHA-256
hashes: the file never holds a usable key, and a key is shown once, when
`scripts/api_keys.py new` makes it. Keys are 256-bit random tokens, so a plain SHA-256 is the
right hash (slow password hashes exist for guessable secrets); a presented key is looked up by its
hash, so no stored value is ever compared byte by byte. Logs and metrics carry the key's `id`,
never the key.

    keys:
      - id: apparel-widget          # in logs and metrics
        sha256: 5e88...             # of the key; scripts/api_keys.py prints it
        shops: [demo-apparel]       # or "*" for every shop
        role: widget                # widget: public client; backend: the shop's own server
        limits: {requests_per_minute: 60, tokens_per_minute: 40000, concurrent_requests: 4}

The file is re-read when it changes; an edit that does not parse is refused as a whole and the
previous keys keep serving (and the problem is logged), so a typo never locks every shop out.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from configs.schema import AccessConfig, RateLimits
from router.api.errors import APIError, ErrorKind

logger = logging.getLogger("cs_assistant.access")

Role = Literal["widget", "backend"]
ALL_SHOPS = "*"
KEY_PREFIX = "csk-"
ANONYMOUS_ID = "anonymous"
# Messages only the shop's own server may send: a public widget sending them could rewrite the
# assistant's instructions (prompt injection with the shop's authority).
BACKEND_ONLY_ROLES = frozenset({"system", "developer", "tool"})


def new_key() -> str:
    """A fresh API key: 256 random bits, URL-safe, with a prefix that secret scanners match."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRecord(BaseModel):
    """One entry of the keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    shops: tuple[str, ...] | Literal["*"] = Field(..., description="Shop ids, or '*'.")
    role: Role
    limits: RateLimits = Field(default_factory=RateLimits)

    @field_validator("shops")
    @classmethod
    def _some_shop(cls, shops):
        if shops != ALL_SHOPS and not shops:
            raise ValueError("a key needs at least one shop, or '*'")
        return shops


def key_entry(key: str, key_id: str, shops: list[str] | str, role: Role,
              limits: dict | None = None) -> dict:
    """The keys-file entry of `key` (its hash, never the key), checked like a loaded file."""
    record = KeyRecord(id=key_id, sha256=hash_key(key), shops=shops, role=role,
                       limits=RateLimits(**(limits or {})))
    return record.model_dump(mode="json", exclude_none=True)


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: tuple[KeyRecord, ...] = ()

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: tuple[KeyRecord, ...]) -> tuple[KeyRecord, ...]:
        for attribute in ("id", "sha256"):
            values = [getattr(k, attribute) for k in keys]
            duplicated = sorted({v for v in values if values.count(v) > 1})
            if duplicated:
                raise ValueError(f"duplicate key {attribute}: {duplicated}")
        return keys


@dataclass(frozen=True)
class Caller:
    """The authenticated client of one request."""

    key_id: str
    role: Role
    shops: frozenset[str] | None  # None: every shop
    limits: RateLimits

    def check_roles(self, roles: list[str]) -> None:
        """403 when a widget key sends messages only the shop's server may send."""
        if self.role == "widget":
            refused = sorted(BACKEND_ONLY_ROLES.intersection(roles))
            if refused:
                raise APIError.of(ErrorKind.ROLE_NOT_ALLOWED, role=refused[0])

    def check_fields(self, fields: list[str]) -> None:
        """403 when a widget key sends fields only the shop's backend may send (tools, response
        formats, the model's reasoning): a browser must not drive tools."""
        if self.role == "widget" and fields:
            raise APIError.of(ErrorKind.BACKEND_ONLY, param=fields[0])

    def shop_for(self, requested: str | None, default: str | None) -> str | None:
        """The shop this request is for: the X-Shop-Id header if the key may use it; without
        the header, the key's only shop, else the app's default shop if the key may use it."""
        if requested is not None:
            if not self.may_use(requested):
                raise APIError.of(ErrorKind.SHOP_NOT_ALLOWED, shop_id=requested)
            return requested
        if self.shops is not None and len(self.shops) == 1:
            return next(iter(self.shops))
        if default is None or self.may_use(default):
            return default
        raise APIError.of(ErrorKind.SHOP_REQUIRED, shops=sorted(self.shops))

    def may_use(self, shop_id: str) -> bool:
        return self.shops is None or shop_id in self.shops


def _caller(record: KeyRecord) -> Caller:
    shops = None if record.shops == ALL_SHOPS else frozenset(record.shops)
    return Caller(record.id, record.role, shops, record.limits)


class KeyStore:
    """The keys of one ingress replica, reloaded when their file changes."""

    def __init__(self, config: AccessConfig, root: Path, known_shops: frozenset[str] = frozenset()):
        self._path = None if config.keys_file is None else root / config.keys_file
        self._known_shops = known_shops
        self._anonymous = (Caller(ANONYMOUS_ID, "backend", None, config.anonymous_limits)
                           if config.allow_anonymous else None)
        self._by_hash: dict[str, Caller] = {}
        self._signature: tuple[int, int, str] | None = None
        if self._path is not None:
            # A missing or broken file at start-up fails the deployment, with the reason.
            self._load(*self._read())
        # Serving without keys is logged as a warning: an open deployment should be noticed.
        (logger.warning if self._anonymous is not None else logger.info)(self.describe())

    def describe(self) -> str:
        """One line for the start-up log: where keys come from and whether anonymous requests
        are served (a deployment running open should say so loudly)."""
        parts = []
        if self._path is not None:
            parts.append(f"{len(self._by_hash)} API keys from {self._path}")
        if self._anonymous is not None:
            parts.append("requests without an API key are SERVED as 'anonymous' "
                         "(access.allow_anonymous)")
        return "access: " + "; ".join(parts)

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller of a request with this Authorization header; 401 if it names no key.
        Without a keys file (anonymous access only) the header is not checked: OpenAI SDKs
        always send one, and there is nothing to check it against."""
        if self._anonymous is not None and self._path is None:
            return self._anonymous
        if authorization is None or not authorization.strip():
            if self._anonymous is not None:
                return self._anonymous
            raise APIError.of(ErrorKind.NO_API_KEY)
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise APIError.of(ErrorKind.MALFORMED_AUTHORIZATION)
        caller = self._by_hash.get(hash_key(key.strip()))
        if caller is None:
            raise APIError.of(ErrorKind.UNKNOWN_API_KEY)  # its text never echoes the key
        return caller

    def refresh_if_changed(self) -> bool:
        """Reload the keys if their file changed; True when new keys are in use. A file that
        does not load leaves the previous keys in place (the error is logged)."""
        if self._path is None:
            return False
        try:
            signature, data = self._read()
            if signature == self._signature:
                return False
            self._load(signature, data)
        except (OSError, ValueError) as exc:
            logger.error("access: keeping the previous API keys; %s", exc)
            return False
        logger.info(self.describe())
        return True

    def _read(self) -> tuple[tuple[int, int, str], bytes]:
        """The file's signature (mtime, size, content hash) and the very bytes it describes."""
        stat = self._path.stat()
        data = self._path.read_bytes()
        return (stat.st_mtime_ns, stat.st_size, hashlib.sha256(data).hexdigest()), data

    def _load(self, signature: tuple[int, int, str], data: bytes) -> None:
        try:
            raw = yaml.safe_load(data.decode("utf-8")) or {}
            keys = KeysFile.model_validate(raw)
        except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self._path}: {exc}") from None
        unknown = sorted({shop for k in keys.keys if k.shops != ALL_SHOPS for shop in k.shops}
                         - self._known_shops) if self._known_shops else []
        if unknown:
            raise ValueError(f"{self._path}: keys name shops that are not configured: {unknown}")
        self._by_hash = {k.sha256: _caller(k) for k in keys.keys}
        self._signature = signature

