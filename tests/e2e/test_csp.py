"""The Content-Security-Policy in a real browser: the portal dashboard (its Chart.js chart), admin
pages (the analytics page with its nonce'd inline script and chart), the cookie-banner demo
(its banner styles and the blocked tags it lets run) and Swagger UI all work under the policy,
and the browser reports no violation on any of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from clients.ingest import ingest_records
from clients.models import ClientMembership
from clients.services import client_create
from consent.models import ConsentSite

from ..consent.conftest import publish_texts
from .test_banner import _restore_seeded_rows, browser  # noqa: F401  (module fixtures)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "csp-test-password-1"  # noqa: S105

# Listens before any page script runs (an init script is not subject to the page's CSP).
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
}, true);
"""


@pytest.fixture
def site(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    client = client_create(name="Альфа Маркет", tier_code="foundation")
    publish_texts(client)
    ConsentSite.objects.create(client=client, name="Демо", allowed_origins=[live_server.url])
    now = timezone.now()
    ingest_records(
        client=client,
        kind="customers",
        records=[{"external_id": f"c{i}", "email": f"c{i}@example.ru"} for i in range(3)],
    )
    ingest_records(
        client=client,
        kind="orders",
        records=[
            {
                "external_id": f"o{i}",
                "customer_external_id": f"c{i % 3}",
                "placed_at": (now - timedelta(days=40 * i + 1)).isoformat(),
                "amount": str(1000 + 500 * i),
            }
            for i in range(6)
        ],
    )
    users = get_user_model()
    owner = users.objects.create_user(username="owner-csp", password=PASSWORD)
    ClientMembership.objects.create(user=owner, client=client, role=ClientMembership.Role.OWNER)
    users.objects.create_user(
        username="admin-csp", password=PASSWORD, is_staff=True, is_superuser=True
    )
    return client


@pytest.fixture
def session(browser):  # noqa: F811
    """A fresh browser context that records CSP violations, console errors and page errors;
    the test fails if any was seen."""
    context = browser.new_context(locale="ru-RU", viewport={"width": 1200, "height": 900})
    context.add_init_script(LISTEN)
    page = context.new_page()
    problems: list[str] = []
    csp_headers: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message):
        # A failed load is reported by on_response with its URL.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console: {message.text}")

    def on_response(response):
        if response.request.resource_type == "document":
            csp_headers.append(response.headers.get("content-security-policy", ""))
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            problems.append(f"{response.status} {response.url}")

    page.on("console", on_console)

    page.on("response", on_response)

    def violations() -> list[str]:
        return page.evaluate("() => window.__cspViolations")

    yield page, problems, violations, csp_headers
    context.close()
    assert problems == []


def login(page, base: str, path: str, username: str) -> None:
    page.goto(base + path)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.locator("form [type=submit]").last.click()


def assert_clean(page, violations, csp_headers) -> None:
    assert csp_headers, "no document was loaded"
    for header in csp_headers:
        assert "default-src 'self'" in header
        assert "script-src 'self'" in header
    assert violations() == [], page.url


def test_portal_dashboard_chart_works_under_the_csp(site, live_server, session):
    page, _problems, violations, csp_headers = session
    login(page, live_server.url, "/portal/login/", "owner-csp")
    page.goto(f"{live_server.url}/portal/{site.slug}/")
    page.wait_for_function("() => window.Chart && Chart.getChart('revenue-chart')")
    drawn = page.evaluate(
        """() => {
          const canvas = document.getElementById('revenue-chart');
          const context = canvas.getContext('2d');
          const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
          return [canvas.width, painted, Chart.getChart(canvas).data.datasets.length];
        }"""
    )
    assert drawn[0] > 0
    assert drawn[1] > 1000  # bars, a line, axes
    assert drawn[2] == 2
    # The language switch (a script file now, no inline handler) still submits.
    with page.expect_navigation():
        page.select_option("select[name=language]", "en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert_clean(page, violations, csp_headers)


def test_admin_pages_work_under_the_csp(site, live_server, session):
    page, _problems, violations, csp_headers = session
    login(page, live_server.url, "/admin/login/", "admin-csp")
    assert page.locator("#content-main").is_visible()
    page.goto(f"{live_server.url}/admin/clients/client/")
    assert page.locator("#result_list").is_visible()
    page.goto(f"{live_server.url}/admin/segments/scoringrun/analytics/{site.pk}/")
    page.wait_for_function("() => window.Chart && Chart.getChart('segment-chart')")
    # The inline <style> with the nonce applied: the heatmap table collapses its borders.
    collapse = page.locator(".rfm-heatmap").evaluate("(el) => getComputedStyle(el).borderCollapse")
    assert collapse == "collapse"
    assert_clean(page, violations, csp_headers)


def test_banner_demo_works_under_the_csp(site, live_server, session):
    page, _problems, violations, csp_headers = session
    key = ConsentSite.objects.for_client(site).get().site_key
    page.goto(f"{live_server.url}/consent/demo/?site={key}")
    page.wait_for_function("() => window.consent !== undefined")
    banner = page.locator("#cvm-consent .cvm")
    assert banner.is_visible()
    # The banner's own stylesheet (a <style> with the page's nonce) applied: a fixed panel.
    assert banner.evaluate("(el) => getComputedStyle(el).position") == "fixed"
    with page.expect_response(lambda r: "/consent/api/banner/" in r.url) as response:
        page.get_by_role("button", name="Принять все", exact=True).click()
    assert response.value.status == 201
    # The blocked inline tags ran once granted (they carry the nonce into their new script).
    page.wait_for_function("() => document.getElementById('tag-metrika').textContent == 'загружен'")
    assert page.locator("#tag-vk_pixel").inner_text() == "загружен"
    assert_clean(page, violations, csp_headers)


def test_swagger_ui_works_under_the_csp(site, live_server, session):
    page, _problems, violations, csp_headers = session
    login(page, live_server.url, "/admin/login/", "admin-csp")
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
    assert page.locator("#swagger-ui .opblock").count() > 10
    assert (
        "API «Агентство CVM»" in page.locator("#swagger-ui .title").inner_text()
    )  # Russian default
    assert_clean(page, violations, csp_headers)
