"""Image URLs fetched by the ingress, safely, so the engine only ever receives inline bytes.

The attacks this stops are the ones vLLM's own fetcher has had:
- CVE-2025-6242: any URL was fetched, so a client could make the server read the cloud metadata
  service (169.254.169.254), the Ray dashboard or anything else on the internal network;
- CVE-2026-24779: the allow-list check and the fetch parsed the URL with different parsers, so
  `https://allowed.com\\@internal/` passed the check as `allowed.com` and was fetched from
  `internal`;
- CVE-2026-25960: the allow-list was checked on the first URL only, and an allowed host's
  redirect to an internal address was followed unchecked.

So: the URL is parsed once, strictly (no backslashes, user info, controls, percent-encoded or
numeric-but-not-canonical hosts, trailing dots), and the request is built from that parse's parts,
never from the raw string; the host must be on the shop's allow-list; its name is resolved once
and every address must be public (or in `allowed_networks`), with IPv4 hidden in IPv6 (mapped,
6to4, Teredo, NAT64) checked as IPv4; the connection goes to the checked address (the HTTP
library is given that address and never resolves the name itself, so DNS rebinding has nothing to
race), while TLS still verifies the certificate for the host name; every redirect goes through
the same checks, at most `max_redirects` times; connect, read and total time are bounded; the body
is capped while it streams; the Content-Type and the file's magic bytes must both say image.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

import httpcore

from configs.schema import RemoteImages
from router.api.errors import APIError, ErrorCode, ErrorKind
from router.images.decode import IMAGE_TYPES

Resolver = Callable[[str, int], Awaitable[list[str]]]
FetchRecorder = Callable[[float, str], None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)"
                        r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
# A host made of digits, dots and hex that is not a canonical IPv4 address: 2130706433,
# 0x7f.0.0.1, 0177.0.0.1, 127.1. C resolvers read these as IPv4 (inet_aton); refused outright.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$")


def image_format(head: bytes) -> str | None:
    """The format the first bytes of a file announce, if it is one of IMAGE_TYPES."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    return None


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    mime: str  # one of IMAGE_TYPES


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed the policy, with the address to connect to."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent
    address: str

    def request_url(self) -> httpcore.URL:
        return httpcore.URL(scheme=self.scheme.encode(), host=self.host.encode(),
                            port=self.port, target=self.target.encode())

    def text(self) -> str:
        """The URL as checked: the base a relative redirect is resolved against."""
        return f"{self.scheme}://{_host_header(self).decode()}{self.target}"


def domain_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """`cdn.shop.com` allows that host only; `.shop.com` allows its subdomains."""
    return any(host == entry or (entry.startswith(".") and host.endswith(entry))
               for entry in allowed)


def parse_image_url(url: str, config: RemoteImages, param: str) -> SplitResult:
    """The URL's parts, or a 400 for anything a second parser could read differently."""
    schemes = ("https", "http") if config.allow_http else ("https",)
    if not url.isascii() or any(c in url for c in "\\ \t\r\n") or not url.isprintable():
        raise APIError.of(ErrorKind.IMAGE_URL_CHARACTERS, param=param)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise APIError.of(ErrorKind.IMAGE_URL_MALFORMED, param=param) from None
    if parts.scheme.lower() not in schemes:
        raise APIError.of(ErrorKind.IMAGE_URL_SCHEME, param=param, schemes=" or ".join(schemes))
    if "@" in parts.netloc:
        raise APIError.of(ErrorKind.IMAGE_URL_CREDENTIALS, param=param)
    host = (parts.hostname or "").lower()
    if not host or port == 0 or "%" in parts.netloc:
        raise APIError.of(ErrorKind.IMAGE_URL_NO_HOST, param=param)
    if _NUMERIC_HOST.match(host) and not _canonical_ip(host):
        raise APIError.of(ErrorKind.IMAGE_URL_NUMERIC_HOST, param=param)
    if not (_HOST_NAME.match(host) or _canonical_ip(host)):
        raise APIError.of(ErrorKind.IMAGE_URL_BAD_HOST, param=param)
    return parts


def _canonical_ip(host: str) -> bool:
    """An IP literal in its one unambiguous form: dotted-quad IPv4 as Python prints it, or any
    IPv6 literal (only IPv4 has the numeric forms resolvers read differently)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 6 or str(address) == host


def address_allowed(address: IPAddress, allowed_networks: tuple[str, ...]) -> bool:
    """Public unicast only, judged on the IPv4 address an IPv6 one may carry; networks listed in
    `allowed_networks` are exempt."""
    if any(address in ipaddress.ip_network(n) for n in allowed_networks):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_allowed(embedded, allowed_networks)
    return address.is_global and not address.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to one checked address whatever host name httpcore asks for: the name is used
    for the Host header, SNI and certificate checks only, and is never resolved again."""

    def __init__(self, address: str):
        self._address = address
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None,
                          socket_options=None):
        return await self._inner.connect_tcp(self._address, port, timeout, local_address,
                                             socket_options)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are never used for images")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class RemoteImageFetcher:
    """Fetches image URLs under the RemoteImages policy; one per ingress replica."""

    def __init__(self, config: RemoteImages, max_bytes: int,
                 resolver: Resolver = system_resolver,
                 ssl_context: ssl.SSLContext | None = None):
        self._config = config
        self._max_bytes = max_bytes
        self._resolver = resolver
        self._ssl_context = ssl_context or ssl.create_default_context()

    async def fetch(self, url: str, allowed_domains: tuple[str, ...], param: str,
                    on_fetched: FetchRecorder = lambda seconds, outcome: None) -> FetchedImage:
        """The image at `url`, or a 400 APIError whose code names the cause; `on_fetched` gets
        the time spent and the outcome (`ok` or the error code)."""
        started = time.monotonic()
        outcome = "ok"
        try:
            async with asyncio.timeout(self._config.total_timeout_s):
                return await self._follow(url, allowed_domains, param)
        except TimeoutError:
            outcome = ErrorCode.IMAGE_FETCH_TIMEOUT.value
            raise APIError.of(ErrorKind.IMAGE_FETCH_TOO_SLOW, param=param,
                              seconds=self._config.total_timeout_s) from None
        except APIError as error:
            outcome = error.code.value
            raise
        finally:
            on_fetched(time.monotonic() - started, outcome)

    async def _follow(self, url: str, allowed_domains: tuple[str, ...],
                      param: str) -> FetchedImage:
        for _ in range(self._config.max_redirects + 1):  # the first request + the redirects
            checked = await self.check(url, allowed_domains, param)
            answer = await self._get(checked, param)
            if isinstance(answer, FetchedImage):
                return answer
            url = urljoin(checked.text(), answer)
        raise APIError.of(ErrorKind.IMAGE_TOO_MANY_REDIRECTS, param=param,
                          limit=self._config.max_redirects)

    async def check(self, url: str, allowed_domains: tuple[str, ...], param: str) -> CheckedURL:
        """Parse, allow-list and resolve `url`; the address to connect to, or a 400."""
        parts = parse_image_url(url, self._config, param)
        host = parts.hostname.lower()
        if not allowed_domains:
            raise APIError.of(ErrorKind.IMAGE_HOSTS_NONE, param=param)
        if not domain_allowed(host, allowed_domains):
            raise APIError.of(ErrorKind.IMAGE_HOST_NOT_ALLOWED, param=param,
                              hosts=", ".join(allowed_domains))
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        try:
            answers = await self._resolver(host, port)
        except OSError:
            raise APIError.of(ErrorKind.IMAGE_HOST_UNRESOLVED, param=param) from None
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in answers]
        # One forbidden answer refuses the URL: a name that mixes public and internal
        # addresses is a rebinding attempt or a misconfiguration either way.
        if not addresses or not all(address_allowed(a, self._config.allowed_networks)
                                    for a in addresses):
            raise APIError.of(ErrorKind.IMAGE_ADDRESS_NOT_PUBLIC, param=param)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return CheckedURL(scheme, host, port, target, str(addresses[0]))

    async def _get(self, checked: CheckedURL, param: str) -> FetchedImage | str:
        """One hop: the image, or the Location of a redirect."""
        timeouts = {"connect": self._config.connect_timeout_s,
                    "read": self._config.read_timeout_s,
                    "write": self._config.read_timeout_s,
                    "pool": self._config.connect_timeout_s}
        async with httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context, network_backend=PinnedBackend(checked.address),
            max_connections=1, retries=0,
        ) as pool:
            try:
                async with pool.stream(
                    "GET", checked.request_url(),
                    headers=[(b"Host", _host_header(checked)), (b"Accept", b"image/*"),
                             (b"User-Agent", b"cs-assistant-image-fetch")],
                    extensions={"timeout": timeouts},
                ) as response:
                    if response.status in REDIRECT_STATUSES:
                        location = _header(response, b"location")
                        if location is None:
                            raise APIError.of(ErrorKind.IMAGE_REDIRECT_WITHOUT_LOCATION,
                                              param=param, http_status=response.status)
                        return location
                    if response.status != 200:
                        raise APIError.of(ErrorKind.IMAGE_HTTP_STATUS, param=param,
                                          http_status=response.status)
                    mime = (_header(response, b"content-type") or "").split(";")[0]
                    mime = mime.strip().lower()
                    if mime not in IMAGE_TYPES:
                        raise APIError.of(ErrorKind.IMAGE_CONTENT_TYPE, param=param,
                                          types=sorted(IMAGE_TYPES))
                    data = await self._read_capped(response, param)
            except httpcore.TimeoutException:
                raise APIError.of(ErrorKind.IMAGE_READ_TIMEOUT, param=param) from None
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
                    ssl.SSLError):
                raise APIError.of(ErrorKind.IMAGE_CONNECTION_FAILED, param=param) from None
        if image_format(data[:16]) != IMAGE_TYPES[mime]:
            raise APIError.of(ErrorKind.IMAGE_BYTES_NOT_CONTENT_TYPE, param=param)
        return FetchedImage(data, mime)

    async def _read_capped(self, response: httpcore.Response, param: str) -> bytes:
        declared = _header(response, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            raise APIError.of(ErrorKind.IMAGE_TOO_MANY_BYTES, param=param, limit=self._max_bytes)
        parts, size = [], 0
        async for part in response.aiter_stream():
            size += len(part)
            if size > self._max_bytes:
                raise APIError.of(ErrorKind.IMAGE_TOO_MANY_BYTES, param=param,
                                  limit=self._max_bytes)
            parts.append(part)
        return b"".join(parts)


def _host_header(checked: CheckedURL) -> bytes:
    default = 443 if checked.scheme == "https" else 80
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    return (host if checked.port == default else f"{host}:{checked.port}").encode()


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
