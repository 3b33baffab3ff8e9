"""The portal speaks Russian by default and English completely on request, counts nouns with
Russian plural forms, and shows times in the client's time zone."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import reverse

from audiences.models import SyncRun
from audiences.sync import audience_sync_now
from clients.ingest import ingest_records
from clients.models import ClientMembership, Customer, ImportJob
from clients.services import client_create
from segments.segmentation import segment_create
from tests.audiences.conftest import FAST, grant, yandex_destination
from tests.consent.conftest import publish_texts

pytestmark = pytest.mark.django_db

CYRILLIC = re.compile("[\u0400-\u04ff]")


class _VisibleText(HTMLParser):
    """The text a person reads on a page: no tags, scripts or styles, but the attributes shown
    to people (title, placeholder, alt, aria-label, a button's value)."""

    SHOWN_ATTRIBUTES = {"title", "placeholder", "alt", "aria-label"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if value and name in self.SHOWN_ATTRIBUTES:
                self.parts.append(value)
        kind = dict(attrs).get("type")
        if tag == "input" and kind in ("submit", "button") and dict(attrs).get("value"):
            self.parts.append(dict(attrs)["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


LANGUAGE_SWITCH = re.compile(r'<select name="language".*?</select>', re.S)


def visible_text(html: str) -> str:
    """The page's text; the language switch names each language in itself (Русский, English)
    and is left out."""
    parser = _VisibleText()
    parser.feed(LANGUAGE_SWITCH.sub("", html))
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture
def latin_client(db, yandex_stub):
    """A client whose own data (names, cities, segments) is in Latin letters, with something on
    every portal page: customers and orders, a rejected CSV import, an audience synced once."""
    client = client_create(name="Gamma Shop", tier_code="foundation")
    client.time_zone = "Asia/Vladivostok"
    client.save(update_fields=["time_zone"])
    publish_texts(client)
    records = [
        {
            "external_id": f"c{i:04d}",
            "email": f"user{i}@example.com",
            "phone": f"+7916{i:07d}",
            "first_name": "Anna",
            "last_name": f"Smith{i}",
            "city": "Moscow",
        }
        for i in range(120)
    ]
    ingest_records(client=client, kind="customers", records=records)
    ingest_records(
        client=client,
        kind="orders",
        records=[
            {
                "external_id": "o1",
                "customer_external_id": "c0000",
                "placed_at": "2026-11-05T10:00:00+03:00",  # 07:00 UTC, 17:00 in Vladivostok
                "amount": "8000",
            },
            {
                "external_id": "o2",
                "customer_external_id": "c0001",
                "placed_at": "2026-11-06T10:00:00+03:00",
                "amount": "500",
                "status": "refunded",
            },
        ],
    )
    grant(client, list(Customer.objects.for_client(client)))
    segment = segment_create(
        client=client,
        name="Moscow",
        kind="rule",
        definition={"all": [{"attribute": "city", "op": "eq", "value": "Moscow"}]},
    )
    from audiences.services import audience_create

    audience = audience_create(
        client=client,
        name="Moscow to Yandex",
        segment=segment,
        destination=yandex_destination(client, name="Yandex main"),
    )
    run = audience_sync_now(audience, source="test", http_options=FAST)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.stage == "выполнена"  # stored in the site's language, translated when shown
    job = ImportJob.objects.create(client=client, kind="customers", status="rejected")
    job.error_report.save("e.csv", ContentFile(b"row,field,reason,value\n2,email,bad,x\n"))
    user = get_user_model().objects.create_user(username="owner-gamma", password="pass-12345")
    ClientMembership.objects.create(user=user, client=client, role="owner")
    return client, user


def _pages(client) -> dict[str, str]:
    customer = Customer.objects.for_client(client).get(external_id="c0000")
    return {
        "home": reverse("portal:home"),
        "dashboard": reverse("portal:dashboard", args=[client.slug]),
        "customers": reverse("portal:customers", args=[client.slug]),
        "search": reverse("portal:customers", args=[client.slug]) + "?q=nobody@example.com",
        "customer": reverse("portal:customer", args=[client.slug, customer.pk]),
        "imports": reverse("portal:imports", args=[client.slug]),
        "audiences": reverse("portal:audiences", args=[client.slug]),
    }


def test_every_portal_page_in_english_has_no_russian_word(client, latin_client):
    gamma, user = latin_client
    client.force_login(user)
    client.post(reverse("set_language"), {"language": "en", "next": "/portal/"})
    for name, url in _pages(gamma).items():
        response = client.get(url, follow=True)  # home: the only client's dashboard
        assert response.status_code == 200, name
        text = visible_text(response.content.decode())
        assert not CYRILLIC.findall(text), (
            name,
            sorted(set(re.findall(r"\S*[\u0400-\u04ff]\S*", text))),
        )
    switch = LANGUAGE_SWITCH.search(response.content.decode()).group(0)
    assert "Русский" in switch
    assert "English" in switch
    client.logout()  # the test client forgets its cookies: choose English again
    client.post(reverse("set_language"), {"language": "en", "next": "/portal/login/"})
    login = visible_text(client.get(reverse("portal:login")).content.decode())
    assert "Sign in to the client portal" in login
    assert not CYRILLIC.search(login)


def test_the_same_pages_are_russian_by_default(client, latin_client):
    gamma, user = latin_client
    client.force_login(user)
    pages = {
        name: client.get(url, follow=True).content.decode() for name, url in _pages(gamma).items()
    }
    assert "Покупатели" in pages["customers"]
    assert "Оплаченная выручка" in pages["dashboard"]
    assert "Импорт CSV" in pages["imports"]
    assert "отклонён (ошибки в строках)" in pages["imports"]  # the job's status label
    audiences = visible_text(pages["audiences"])
    assert "Яндекс Аудитории · ретаргетинг" in audiences  # platform and purpose labels
    assert "выполнена" in audiences  # the run's status and stage
    assert "Агентство CVM" in pages["home"]  # one brand name
    assert "возврат" in pages["customer"] or "оплачен" in pages["customer"]


def test_labels_and_brand_in_english(client, latin_client):
    gamma, user = latin_client
    client.force_login(user)
    client.post(reverse("set_language"), {"language": "en", "next": "/portal/"})
    audiences = visible_text(client.get(_pages(gamma)["audiences"]).content.decode())
    assert "Yandex Audiences · retargeting" in audiences
    assert "succeeded" in audiences
    dashboard = client.get(_pages(gamma)["dashboard"]).content.decode()
    assert "<title>Gamma Shop · Agency CVM</title>" in dashboard
    assert '<a class="brand" href="/portal/">Agency CVM</a>' in dashboard
    imports = visible_text(client.get(_pages(gamma)["imports"]).content.decode())
    assert "rejected (errors in rows)" in imports


@pytest.mark.parametrize(
    ("count", "russian", "english"),
    [
        (1, "1 покупатель", "1 customer"),
        (2, "2 покупателя", "2 customers"),
        (5, "5 покупателей", "5 customers"),
        (11, "11 покупателей", "11 customers"),
        (21, "21 покупатель", "21 customers"),
        (24, "24 покупателя", "24 customers"),
    ],
)
def test_customer_counts_use_russian_plural_forms(
    client, client_a, portal_owner_a, count, russian, english
):
    ingest_records(
        client=client_a,
        kind="customers",
        records=[{"external_id": f"c{i}", "email": f"u{i}@example.ru"} for i in range(count)],
    )
    client.force_login(portal_owner_a)
    url = reverse("portal:customers", args=[client_a.slug])
    found = re.compile(r'<p class="muted" id="customers-found">([^<]*)</p>')
    assert found.search(client.get(url).content.decode()).group(1) == russian
    client.post(reverse("set_language"), {"language": "en", "next": url})
    assert found.search(client.get(url).content.decode()).group(1) == english


def test_times_are_shown_in_the_clients_time_zone(client, latin_client):
    gamma, user = latin_client
    client.force_login(user)
    customer = Customer.objects.for_client(gamma).get(external_id="c0000")
    page = client.get(reverse("portal:customer", args=[gamma.slug, customer.pk])).content.decode()
    # Placed at 10:00 Moscow time = 07:00 UTC = 17:00 in Vladivostok (UTC+10).
    assert "<td>05.11.2026 17:00</td>" in page
    assert "05.11.2026 10:00" not in page
    job = ImportJob.objects.for_client(gamma).get()
    created = job.created_at.astimezone(gamma.tzinfo).strftime("%d.%m.%Y %H:%M")
    assert f"<td>{created}</td>" in client.get(_pages(gamma)["imports"]).content.decode()
    assert job.created_at.astimezone(gamma.tzinfo).utcoffset().total_seconds() == 10 * 3600
    # The zone is the page's only: the next request of the thread is back in the site's zone.
    from django.utils import timezone

    assert timezone.get_current_timezone_name() == "Europe/Moscow"
