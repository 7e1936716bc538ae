"""Remote image URLs: the SSRF matrix, against a real HTTP server on loopback and an injected DNS
resolver (the names below never reach a real resolver).

The loopback server stands in for the shop's CDN: `cdn.shop.test` resolves to 127.0.0.1, which
this config exempts (`allowed_networks`), as the integration config does. Every other private
answer must be refused.
"""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from configs.schema import RemoteImages
from router.api.errors import APIError
from router.images.remote import RemoteImageFetcher, address_allowed, image_format
from tests.image_server import JPEG, PNG, ImageServer

CDN = "cdn.shop.test"
PARAM = "messages[0].content[1].image_url"
DNS = {
    CDN: ["127.0.0.1"],
    "internal.shop.test": ["10.0.0.5"],       # an allowed name that points inside
    "metadata.shop.test": ["169.254.169.254"],
    "mixed.shop.test": ["93.184.215.14", "10.0.0.5"],
    "mapped.shop.test": ["::ffff:127.0.0.2"],
}


class Resolver:
    """Answers from DNS (or `answers`, in turn, for rebinding); counts lookups per name."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None):
        self.answers = answers or {}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.answers:
            return self.answers[host].pop(0)
        if host in DNS:
            return DNS[host]
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            raise OSError(f"NXDOMAIN {host}") from None


def config(**overrides) -> RemoteImages:
    values = dict(allow_http=True, allowed_networks=("127.0.0.1/32",), connect_timeout_s=2,
                  read_timeout_s=2, total_timeout_s=4)
    return RemoteImages(**{**values, **overrides})


DOMAINS = (CDN, "internal.shop.test", "metadata.shop.test", "mixed.shop.test",
           "mapped.shop.test", ".img.shop.test")


def fetch(url: str, resolver=None, domains=DOMAINS, max_bytes=1_000_000, **overrides):
    fetcher = RemoteImageFetcher(config(**overrides), max_bytes, resolver or Resolver())
    return asyncio.run(fetcher.fetch(url, domains, PARAM))


def refusal(url: str, **kwargs) -> APIError:
    with pytest.raises(APIError) as caught:
        fetch(url, **kwargs)
    error = caught.value
    assert error.status == 400 and error.param == PARAM
    return error


@pytest.fixture(scope="module")
def cdn():
    with ImageServer() as server:
        yield server


def test_an_allowed_image_is_fetched_from_the_checked_address_with_its_host_name(cdn):
    resolver = Resolver()
    image = fetch(f"http://{CDN}:{cdn.port}/shirt.png", resolver)
    assert (image.data, image.mime) == (PNG, "image/png")
    assert resolver.lookups == [CDN]
    assert cdn.requests_seen[-1] == ("/shirt.png", f"{CDN}:{cdn.port}")
    assert fetch(f"http://{CDN.upper()}:{cdn.port}/shirt.jpg").data == JPEG


@pytest.mark.parametrize("url", [
    "http://evil.test/a.png",                    # not on the allow-list
    f"http://{CDN}.evil.test/a.png",             # allow-listed name as a prefix
    "http://img.shop.test.evil.test/a.png",
    "https://shop.test/a.png",                   # .img.shop.test allows subdomains only
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "ftp://cdn.shop.test/a.png",
    "dict://cdn.shop.test:11211/stat",
    # CVE-2026-24779: the check and the fetch must not read different hosts.
    f"http://{CDN}\\@evil.test/a.png",
    f"http://evil.test\\@{CDN}/a.png",
    f"http://{CDN}@evil.test/a.png",              # user info
    f"http://user:pass@{CDN}/a.png",
    f"http://evil.test#@{CDN}/a.png",
    f"http://evil.test?@{CDN}/a.png",
    f"http://{CDN}./a.png",                       # trailing dot
    "http://cdn%2eshop.test/a.png",               # percent-encoded host
    f"http://{CDN}\t/a.png",
    f"http://{CDN} /a.png",
    "http://cdn.shöp.test/a.png",                 # non-ASCII (IDN must arrive punycoded)
    f"http://{CDN}:0/a.png",
    f"http://{CDN}:99999/a.png",
    "http:///a.png",
    # Numeric hosts a C resolver reads as 127.0.0.1: refused whatever the allow-list says.
    "http://2130706433/a.png",
    "http://0x7f000001/a.png",
    "http://0x7f.0.0.1/a.png",
    "http://0177.0.0.1/a.png",
    "http://127.1/a.png",
])
def test_urls_outside_the_policy_are_refused_before_any_lookup(url):
    resolver = Resolver()
    assert refusal(url, resolver=resolver, domains=DOMAINS + ("2130706433", "127.1")).code \
        == "image_url_not_allowed"
    assert resolver.lookups == []


def test_https_only_unless_the_config_allows_http(cdn):
    error = refusal(f"http://{CDN}:{cdn.port}/shirt.png", allow_http=False)
    assert error.code == "image_url_not_allowed" and "https" in error.message


@pytest.mark.parametrize("host", [
    "internal.shop.test",      # DNS answers a private address
    "metadata.shop.test",      # the cloud metadata service (CVE-2025-6242's target)
    "mixed.shop.test",         # one public, one private answer
    "mapped.shop.test",        # IPv4-mapped IPv6 loopback (127.0.0.2 is not exempt)
])
def test_allowed_names_that_resolve_inside_are_refused(host):
    assert refusal(f"http://{host}/a.png").code == "image_address_blocked"


@pytest.mark.parametrize("literal", [
    "127.0.0.2", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "2002:a9fe:a9fe::1",          # 6to4 around 169.254.169.254
    "64:ff9b::a9fe:a9fe",         # NAT64 around 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo around 10.0.0.1
])
def test_every_non_public_address_form_is_refused(literal):
    assert not address_allowed(ipaddress.ip_address(literal), ())
    host = f"[{literal}]" if ":" in literal else literal
    assert refusal(f"http://{host}/a.png", domains=(literal,)).code == "image_address_blocked"


def test_public_addresses_pass_and_listed_networks_are_exempt():
    assert address_allowed(ipaddress.ip_address("93.184.215.14"), ())
    assert address_allowed(ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"), ())
    assert address_allowed(ipaddress.ip_address("10.0.0.5"), ("10.0.0.0/24",))
    assert not address_allowed(ipaddress.ip_address("10.0.1.5"), ("10.0.0.0/24",))


def test_a_redirect_to_an_internal_address_is_refused(cdn):
    # CVE-2026-25960: the allow-list and the address are checked again on every hop.
    base = f"http://{CDN}:{cdn.port}"
    for target, code in [("http://169.254.169.254/latest/meta-data/", "image_url_not_allowed"),
                         ("http://internal.shop.test/a.png", "image_address_blocked"),
                         ("http://metadata.shop.test/a.png", "image_address_blocked"),
                         ("file:///etc/passwd", "image_url_not_allowed")]:
        assert refusal(f"{base}/redirect?to={target}").code == code


def test_redirects_are_followed_three_times_at_most(cdn):
    base = f"http://{CDN}:{cdn.port}"
    assert fetch(f"{base}/hops/3").data == PNG
    assert refusal(f"{base}/hops/4").code == "image_too_many_redirects"
    assert refusal(f"{base}/hops/1", max_redirects=0).code == "image_too_many_redirects"


def test_dns_is_asked_once_per_hop_so_rebinding_has_nothing_to_race(cdn):
    # The first answer is checked and connected to; a second lookup would get the internal one.
    resolver = Resolver({CDN: [["127.0.0.1"], ["10.0.0.5"]]})
    assert fetch(f"http://{CDN}:{cdn.port}/shirt.png", resolver).data == PNG
    assert resolver.lookups == [CDN]


@pytest.mark.parametrize("path,code", [
    ("/page.html", "image_wrong_content_type"),
    ("/fake.png", "image_wrong_content_type"),     # content type and magic bytes disagree
    ("/missing.png", "image_fetch_failed"),
    ("/redirect-nowhere", "image_fetch_failed"),
    ("/endless", "image_too_large"),               # the cap holds while the body streams
])
def test_bad_answers_are_refused_with_their_cause(cdn, path, code):
    assert refusal(f"http://{CDN}:{cdn.port}{path}", max_bytes=200_000).code == code


def test_a_silent_server_hits_the_read_timeout(cdn):
    error = refusal(f"http://{CDN}:{cdn.port}/slow-headers", read_timeout_s=0.5,
                    total_timeout_s=3)
    assert error.code == "image_fetch_timeout"


def test_a_dripping_body_hits_the_total_timeout(cdn):
    # One byte a second never trips the read timeout; the total bound ends it.
    error = refusal(f"http://{CDN}:{cdn.port}/drip", read_timeout_s=2, total_timeout_s=1.5)
    assert error.code == "image_fetch_timeout"


def test_unknown_names_and_closed_ports_are_fetch_failures():
    assert refusal("http://nowhere.img.shop.test/a.png").code == "image_fetch_failed"
    with ImageServer() as server:
        port = server.port
    assert refusal(f"http://{CDN}:{port}/shirt.png").code == "image_fetch_failed"


def test_messages_never_carry_internal_details():
    error = refusal("http://internal.shop.test/a.png")
    assert "10.0.0.5" not in error.message


def test_magic_bytes_of_each_accepted_format():
    assert image_format(PNG[:16]) == "PNG" and image_format(JPEG[:16]) == "JPEG"
    assert image_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert image_format(b"GIF89a") == "GIF"
    assert image_format(b"<html>") is None


def test_the_engine_receives_fetched_bytes_inline_never_a_url(local_config, cdn):
    from fastapi.testclient import TestClient

    from router.chat_service import ChatService
    from router.ingress import build_api
    from tests.conftest import image_message
    from tests.fakes import fake_streamers, recording_metrics
    from tests.unit.test_ingress_http import FakeHandle

    config = local_config.model_copy(update={"remote_images": config_for_loopback()})
    streamers, engines = fake_streamers(config)
    metrics, registry = recording_metrics(config)
    client = TestClient(build_api(ChatService(config, streamers), metrics, config,
                                  FakeHandle()), raise_server_exceptions=False)
    url = f"http://127.0.0.1:{cdn.port}/shirt.png"
    body = {"messages": [image_message(url=url), image_message("and again?", url=url)]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    sent = engines["vision"].requests[-1].messages
    urls = [part["image_url"]["url"] for message in sent if isinstance(message["content"], list)
            for part in message["content"] if part.get("type") == "image_url"]
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls)
    assert sum(1 for path, _ in cdn.requests_seen if path == "/shirt.png") >= 1
    assert registry.get_sample_value("cs_image_fetch_seconds_count", {"outcome": "ok"}) == 1
    refused_response = client.post("/v1/chat/completions", json={"messages": [
        image_message(url=f"http://localhost:{cdn.port}/shirt.png")]})
    assert refused_response.status_code == 400
    assert refused_response.json()["error"]["code"] == "image_url_not_allowed"
    assert refused_response.json()["error"]["param"] == "messages[0].content[1].image_url"


def config_for_loopback() -> RemoteImages:
    return RemoteImages(allowed_domains=("127.0.0.1",), allow_http=True,
                        allowed_networks=("127.0.0.1/32",))


def test_the_vllm_engine_is_told_to_fetch_nothing(local_config):
    from model_server.vllm.engine import ENGINE_FETCHES_NOTHING, VLLMChatEngine
    from tests.conftest import model_for

    args = VLLMChatEngine(model_for(local_config, "vision"), "/fake").engine_args()
    # vLLM treats an empty list as "every host"; one impossible host allows none.
    assert args.allowed_media_domains == [ENGINE_FETCHES_NOTHING]
    assert ENGINE_FETCHES_NOTHING.endswith(".invalid")


def test_configured_hosts_are_compared_in_lower_case():
    # URL host names are lower-cased before the allow-list is consulted.
    assert config(allowed_domains=(" CDN.Shop.Test ", ".IMG.shop.test")).allowed_domains == (
        "cdn.shop.test", ".img.shop.test")
