"""The cookie banner in a real headless browser: Playwright driving Debian's chromium against
the live test server (the demo page, the served banner.js and its public endpoint).

`make test` installs chromium when it runs as root (as CI does). Without /usr/bin/chromium or
the playwright package these tests skip, saying why, unless running as root: then they fail,
because there they must run.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from django.db import connection

from clients.services import client_create
from consent.models import ConsentRecord, ConsentSite

from ..consent.conftest import publish_texts

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENDPOINT = "/consent/api/banner/"

pytestmark = [
    pytest.mark.e2e,
    # The live server reads from its own connection, so the data must be committed; the
    # serialized rollback puts back what data migrations seeded (purposes, tiers) each time.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _missing_browser() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found: apt-get install chromium (`make test` does it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    return None


class InBrowserThread:
    """A Playwright object used from the test as usual, while every call runs in one thread
    of its own.

    Playwright's sync API keeps an asyncio loop running in the thread that drives it. In the
    test's thread that would make Django refuse the ORM (async-unsafe) and hand out a different
    database connection (connections are thread-critical), which loses the transactional
    test's bookkeeping. So the browser lives in a dedicated thread and the test keeps plain
    synchronous Django.
    """

    def __init__(self, target: Any, pool: ThreadPoolExecutor):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_pool", pool)

    def _run(self, fn, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs).result(timeout=120)

    def _wrap(self, value: Any) -> Any:
        if type(value).__module__.startswith("playwright."):
            return InBrowserThread(value, self._pool)
        return value

    def __getattr__(self, name: str) -> Any:
        attribute = self._run(getattr, self._target, name)
        if callable(attribute):
            return lambda *args, **kwargs: self._wrap(self._run(attribute, *args, **kwargs))
        return self._wrap(attribute)

    def __enter__(self):
        return self._wrap(self._run(self._target.__enter__))

    def __exit__(self, *exc_info):
        return self._run(self._target.__exit__, *exc_info)


@pytest.fixture(scope="module", autouse=True)
def _restore_seeded_rows(django_db_blocker):
    """Transactional tests empty every table when they end; put the migration-seeded rows back
    for whatever test runs after this module (a later transactional test would find no tiers
    and no consent purposes otherwise)."""
    yield
    contents = getattr(connection, "_test_serialized_contents", None)
    if contents:
        with django_db_blocker.unblock():
            connection.creation.deserialize_db_from_string(contents)


@pytest.fixture(scope="module")
def browser():
    reason = _missing_browser()
    if reason:
        if os.geteuid() == 0:
            pytest.fail(f"{reason} — running as root, so the browser tests must run", False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
    playwright = pool.submit(lambda: sync_playwright().start()).result(timeout=120)
    try:
        chromium = pool.submit(
            playwright.chromium.launch, executable_path=CHROMIUM, args=CHROMIUM_ARGS
        ).result(timeout=120)
        yield InBrowserThread(chromium, pool)
        pool.submit(chromium.close).result(timeout=120)
    finally:
        pool.submit(playwright.stop).result(timeout=120)
        pool.shutdown()


@pytest.fixture
def shop(live_server, settings):
    """A client with published texts and a site whose allowed origin is the live server."""
    settings.PUBLIC_BASE_URL = live_server.url
    client = client_create(name="Альфа Маркет", tier_code="foundation")
    texts = publish_texts(client)
    site = ConsentSite.objects.create(
        client=client, name="Демо-магазин", allowed_origins=[live_server.url]
    )
    return SimpleNamespace(
        client=client,
        texts=texts,
        site=site,
        url=f"{live_server.url}/consent/demo/?site={site.site_key}",
    )


@pytest.fixture
def visit(browser):
    """Open a URL in a fresh browser context (no cookies); page errors fail the test."""
    contexts = []
    errors: list[str] = []

    def open_page(url: str):
        context = browser.new_context(locale="ru-RU", viewport={"width": 1100, "height": 760})
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        page.wait_for_function("() => window.consent !== undefined")
        return context, page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == []


def records(client):
    return ConsentRecord.objects.for_client(client).select_related("purpose", "text")


def click_and_wait_for_post(page, name: str):
    with page.expect_response(
        lambda r: ENDPOINT in r.url and r.request.method == "POST"
    ) as response:
        page.get_by_role("button", name=name, exact=True).click()
    # The script rewrites the cookie when the reply has been read.
    assert page.evaluate("() => window.consent.lastSend") is True
    return response.value


def stored_cookie(context) -> dict:
    (cookie,) = [c for c in context.cookies() if c["name"] == "cvm_consent"]
    return {**json.loads(unquote(cookie["value"])), "_expires": cookie["expires"]}


def record_changes(page) -> None:
    page.evaluate(
        "() => { window.__changes = [];"
        " window.addEventListener('consent:changed', e => window.__changes.push(e.detail)); }"
    )


def granted(page, code: str) -> bool:
    return page.evaluate("(code) => window.consent.granted(code)", code)


def banner(page):
    return page.locator("#cvm-consent .cvm")


def test_reject_stores_denials_and_no_grant(shop, visit):
    context, page = visit(shop.url)
    assert banner(page).is_visible()
    assert granted(page, "analytics_cookies") is False
    record_changes(page)

    response = click_and_wait_for_post(page, "Отклонить все")
    assert response.status == 201
    assert response.headers["access-control-allow-origin"] == shop.site.allowed_origins[0]

    cookie = stored_cookie(context)
    subject = cookie["id"]
    assert cookie["c"] == {"analytics_cookies": False, "ad_cookies": False}
    assert cookie["s"] == 1
    assert abs(cookie["_expires"] - (time.time() + 180 * 24 * 3600)) < 600  # 180 days

    saved = list(records(shop.client).order_by("id"))
    assert [(r.purpose.code, r.action, r.subject_id) for r in saved] == [
        ("analytics_cookies", "withdrawn", subject),
        ("ad_cookies", "withdrawn", subject),
    ]
    assert not records(shop.client).filter(action="granted").exists()
    user_agent = page.evaluate("() => navigator.userAgent")
    for record in saved:
        assert record.source == "cookie_banner"
        assert record.ip == "127.0.0.1"
        assert record.user_agent == user_agent
        assert record.url == shop.url

    assert granted(page, "analytics_cookies") is False
    assert granted(page, "ad_cookies") is False
    assert page.evaluate("() => window.__changes") == [
        {"choices": {"analytics_cookies": False, "ad_cookies": False}, "subjectId": subject}
    ]
    assert banner(page).is_hidden()
    assert "заблокирован" in page.locator("#tag-metrika").inner_text()
    assert "заблокирован" in page.locator("#tag-vk_pixel").inner_text()

    # The next page remembers the choice: no banner, no new record.
    page.reload()
    page.wait_for_function("() => window.consent && window.consent.decided()")
    assert banner(page).is_hidden()
    assert granted(page, "analytics_cookies") is False
    assert records(shop.client).count() == 2


def test_accept_stores_grants_with_evidence(shop, visit):
    context, page = visit(shop.url)
    record_changes(page)
    response = click_and_wait_for_post(page, "Принять все")
    assert response.status == 201
    subject = stored_cookie(context)["id"]

    saved = list(records(shop.client).order_by("id"))
    assert [(r.purpose.code, r.action) for r in saved] == [
        ("analytics_cookies", "granted"),
        ("ad_cookies", "granted"),
    ]
    user_agent = page.evaluate("() => navigator.userAgent")
    assert "Chrome" in user_agent
    for record in saved:
        assert record.subject_id == subject
        assert record.ip == "127.0.0.1"
        assert record.user_agent == user_agent
        assert record.url == shop.url
        assert record.text == shop.texts[record.purpose.code]
        assert record.details["origin"] == shop.site.allowed_origins[0]

    assert granted(page, "analytics_cookies") is True
    assert granted(page, "ad_cookies") is True
    assert page.evaluate("() => window.__changes")[0]["choices"] == {
        "analytics_cookies": True,
        "ad_cookies": True,
    }
    # The blocked tags ran once their category was granted.
    assert page.locator("#tag-metrika").inner_text() == "загружен"
    assert page.locator("#tag-direct").inner_text() == "загружен"


def test_settings_turns_on_only_analytics(shop, visit):
    context, page = visit(shop.url)
    page.get_by_role("button", name="Настройки", exact=True).click()
    analytics = page.locator('input[data-category="analytics_cookies"]')
    ads = page.locator('input[data-category="ad_cookies"]')
    assert analytics.is_visible()
    assert not analytics.is_checked()  # nothing is pre-ticked
    assert not ads.is_checked()
    # The full text of the consent, as published by the client, is one click away.
    page.get_by_text("Текст согласия (версия 1)").first.click()
    assert page.get_by_text("125009, Москва, ул. Тверская, д. 1").first.is_visible()

    analytics.check()
    response = click_and_wait_for_post(page, "Сохранить выбор")
    assert response.status == 201

    subject = stored_cookie(context)["id"]
    assert sorted(records(shop.client).values_list("purpose__code", "action", "subject_id")) == [
        ("ad_cookies", "withdrawn", subject),
        ("analytics_cookies", "granted", subject),
    ]
    assert granted(page, "analytics_cookies") is True
    assert granted(page, "ad_cookies") is False
    assert page.locator("#tag-metrika").inner_text() == "загружен"
    assert "заблокирован" in page.locator("#tag-vk_pixel").inner_text()

    # Changing one's mind later is as easy: reopen, reject all → a withdrawal on top.
    page.get_by_role("button", name="Настройки cookie", exact=True).click()
    assert page.locator('input[data-category="analytics_cookies"]').is_checked()
    click_and_wait_for_post(page, "Отклонить все")
    assert granted(page, "analytics_cookies") is False
    latest = records(shop.client).filter(purpose__code="analytics_cookies").order_by("-id")[0]
    assert (latest.action, latest.subject_id) == ("withdrawn", subject)


def test_accept_and_reject_are_equally_prominent(shop, visit, tmp_path):
    _context, page = visit(shop.url)
    accept = page.get_by_role("button", name="Принять все", exact=True)
    reject = page.get_by_role("button", name="Отклонить все", exact=True)
    a, r = accept.bounding_box(), reject.bounding_box()
    assert (round(a["width"]), round(a["height"])) == (round(r["width"]), round(r["height"]))
    assert abs(a["y"] - r["y"]) < 1  # side by side
    style = (
        "(el) => { const s = getComputedStyle(el); return [s.backgroundColor, s.color,"
        " s.fontSize, s.fontWeight, s.borderTopWidth, s.borderTopColor, s.borderRadius]; }"
    )
    assert accept.evaluate(style) == reject.evaluate(style)
    page.screenshot(path=str(tmp_path / "banner.png"))
    # Opening the settings keeps both choices in place, the same as before.
    page.get_by_role("button", name="Настройки", exact=True).click()
    assert page.locator('input[data-category="ad_cookies"]').is_visible()
    assert accept.bounding_box()["width"] == reject.bounding_box()["width"]
    page.screenshot(path=str(tmp_path / "banner-settings.png"))


def test_origin_not_allowed_writes_nothing(shop, visit, live_server):
    # The same demo served from 127.0.0.1: a different origin from the allowed localhost one.
    foreign = shop.url.replace("://localhost:", "://127.0.0.1:")
    assert foreign != shop.url
    context, page = visit(foreign)
    assert page.locator("#origin-warning").is_visible()
    page.get_by_role("button", name="Принять все", exact=True).click()
    # The preflight is refused (403 without CORS headers), so the post never happens.
    assert page.evaluate("() => window.consent.lastSend") is False
    assert records(shop.client).count() == 0
    # The visitor's choice still holds on the device, marked unsent.
    cookie = stored_cookie(context)
    assert cookie["c"]["analytics_cookies"] is True
    assert cookie["s"] == 0
