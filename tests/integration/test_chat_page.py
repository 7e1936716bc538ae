"""The web chat page in a real headless Chromium (Debian's, driven by Playwright) against the real
shared stack: a curated answer and a model answer stream in with their sources, a photo goes to
the vision model, a hand-off shows its banner, a 429 shows a countdown from Retry-After, and an
API key limits the shops offered. Screenshots go to .run/test-artifacts/chat-page/ (the README's
picture is one of them)."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.conftest import PROJECT_ROOT
from tests.integration.test_local_stack import TEXT_MODEL, VISION_MODEL

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = PROJECT_ROOT / ".run" / "test-artifacts" / "chat-page"
# Chromium on a machine with no internet: no background calls to Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
ANSWER_TIMEOUT_MS = 120_000  # a tiny model on 2 cores, behind whatever else the suite runs
# Grounded and answered by the model (not a written FAQ question).
MODEL_QUESTION = "包邮吗？新疆也包邮吗，顺丰要加钱吗"
MODEL_ATTEMPTS = 6


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/install-debian-tools.sh chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(viewport={"width": 900, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{stack.url}/chat")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def ask(page, text: str):
    """Send `text`; the new answer bubble once its stream has ended (its meta line is shown)."""
    answers = page.locator(".msg.bot")
    before = answers.count()
    page.fill("#message", text)
    page.click("#send")
    answer = answers.nth(before)
    answer.locator(".meta").wait_for(timeout=ANSWER_TIMEOUT_MS)
    return answer


def banner_text(page) -> str:
    banner = page.locator("#banner")
    return banner.inner_text() if banner.is_visible() else ""


def test_answers_stream_in_with_their_sources_curated_and_generated(page):
    assert page.locator("#shop option").all_inner_texts() == [
        "Maple & Thread Apparel 枫线服饰", "Voltway Electronics 伏特路数码"]
    curated = ask(page, "包郵嗎？")
    assert curated.locator(".text").inner_text().startswith("中通快递发全国大陆地区包邮")
    assert "faq/shipping-fee" in curated.locator(".sources").inner_text()
    assert "curated FAQ answer" in curated.locator(".meta").inner_text()

    # The random-weight tiny model sometimes writes only tokens that decode to nothing (about
    # one answer in three); the shop then sends its no-answer message as a hand-off, with no
    # sources. Its answers are sampled, so the question is asked again until one has text, each
    # time in a new conversation: after two no-answer replies in a row the shop hands the
    # conversation off (repeated_failure) without asking the model, so retries in the same one
    # were only two real tries (it failed about one run in ten).
    for asked in range(1, MODEL_ATTEMPTS + 1):
        if asked > 1:
            page.click("#new-chat")
            ask(page, "包郵嗎？")
        generated = ask(page, MODEL_QUESTION)
        if generated.locator(".sources").count():
            break
    else:
        pytest.fail(f"{MODEL_ATTEMPTS} model answers, none with text")
    sources = generated.locator(".sources").inner_text()
    assert "faq/shipping-fee" in sources and "faq/shipping-remote-regions" in sources
    meta = generated.locator(".meta").inner_text()
    assert TEXT_MODEL in meta and re.search(r"model, [1-9]\d* tokens", meta), meta
    assert generated.get_attribute("data-route") == "text"
    assert page.locator(".msg.user").count() == 2  # the curated question and this one
    page.screenshot(path=str(ARTIFACTS / "chat-page.png"))
    # Readable on a phone: the same conversation at a phone's width, nothing cut off sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "chat-page-phone.png"))


def test_a_photo_is_resized_in_the_browser_and_goes_to_the_vision_model(page, tmp_path):
    photo = tmp_path / "parcel.png"
    Image.new("RGB", (3000, 2000), (200, 60, 40)).save(photo)  # larger than the page sends
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#attachment:not([hidden])")
    width, height = (int(n) for n in re.match(
        r"(\d+)×(\d+)", page.inner_text("#attachment-info")).groups())
    assert max(width, height) <= 1280 and width / height == pytest.approx(1.5, rel=0.01)
    answer = ask(page, "这是我收到的包裹，颜色不对")
    assert answer.get_attribute("data-route") == "vision"
    assert VISION_MODEL in answer.locator(".meta").inner_text()
    assert page.locator(".msg.user img").count() == 1
    page.screenshot(path=str(ARTIFACTS / "chat-page-photo.png"))


def test_a_handoff_shows_the_banner(page):
    answer = ask(page, "我要投诉！转人工！")
    banner = page.locator("#banner")
    assert banner.is_visible() and "handoff" in banner.get_attribute("class")
    assert "人工客服" in banner.inner_text() and "complaint" in banner.inner_text()
    assert "已转人工" in answer.locator(".handoff-note").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-page-handoff.png"))


def test_a_demo_shopper_signs_in_and_is_answered_from_the_order(page):
    anonymous = ask(page, "我的快递到哪了")
    assert "登录" in anonymous.locator(".text").inner_text()
    assert "order look-up: signed_out" in anonymous.locator(".meta").inner_text()
    assert page.locator("#shopper option").all_inner_texts()[1:] == ["u1001", "u1002", "u1003"]
    page.select_option("#shopper", "u1001")  # a new conversation, signed in
    answer = ask(page, "我的快递到哪了")
    text = answer.locator(".text").inner_text()
    assert "SF1428730095621" in text and "运输中" in text, text
    assert "order/MT" in answer.locator(".sources").inner_text()
    assert "order look-up: found" in answer.locator(".meta").inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-page-order.png"))


def test_a_key_limits_the_shops_and_a_429_counts_down_from_retry_after(page, stack_keys):
    page.click("#key-button")
    page.fill("#api-key", stack_keys["page-limited"].key)
    page.click("#save-key")
    # Locator assertions, not wait_for_function: the page's CSP forbids evaluating strings.
    expect(page.locator("#shop option")).to_have_count(1)
    assert page.locator("#shop option").all_inner_texts() == ["Maple & Thread Apparel 枫线服饰"]
    # One request a minute: the listing or the first question uses it; a later one is a 429.
    for _ in range(3):
        page.fill("#message", "包邮吗")
        page.click("#send")
        deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
        while page.locator("#send").is_disabled() and "try again in" not in banner_text(page):
            assert time.monotonic() < deadline, "neither an answer nor a countdown"
            page.wait_for_timeout(200)
        if "try again in" in banner_text(page):
            break
    banner = page.inner_text("#banner")
    assert "Too many requests" in banner, banner
    first = int(re.search(r"try again in (\d+) s", banner).group(1))
    assert page.locator("#send").is_disabled()
    assert page.input_value("#message") == "包邮吗"  # given back to resend
    page.wait_for_timeout(2200)
    later = int(re.search(r"try again in (\d+) s", page.inner_text("#banner")).group(1))
    assert later < first
    page.screenshot(path=str(ARTIFACTS / "chat-page-429.png"))
