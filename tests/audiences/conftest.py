"""Fixtures of the audience tests: a client's customers with and without consent, a segment of
them, loopback stubs of the platforms and destinations pointing at them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from audiences.services import audience_create, destination_create
from clients.ingest import ingest_records
from clients.models import Customer
from consent.models import ConsentRecord
from consent.services import consent_record_build, consent_records_save
from segments.segmentation import segment_create
from tests.consent.conftest import publish_texts
from tests.stubs.vk_ads import VkAdsStub
from tests.stubs.yandex_audiences import YandexAudiencesStub

YANDEX_TOKEN = "test-yandex-token"
VK_CLIENT, VK_SECRET = "test-client", "test-secret"
FAST = {"timeout": 5, "max_attempts": 8, "max_backoff": 0.2}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()  # noqa: S324 - what the platform takes


@dataclass
class World:
    """Who is who among the generated customers (by external id)."""

    client: object
    segment: object
    suppression: object
    customers: dict[str, Customer]
    no_consent: set[str]
    suppressed: set[str]

    def expected(self, *, exclude: set[str] = frozenset()) -> list[Customer]:
        return [
            c
            for ext, c in self.customers.items()
            if ext not in self.no_consent | self.suppressed | set(exclude)
        ]

    def emails(self, hasher, **kw) -> set[str]:
        return {hasher(c.email) for c in self.expected(**kw)}

    def phones(self, hasher, **kw) -> set[str]:
        return {hasher(c.phone.lstrip("+")) for c in self.expected(**kw)}


def grant(client, customers, action=ConsentRecord.Action.GRANTED):
    records = [
        consent_record_build(
            client=client, purpose_code="ad_audiences", action=action, source="api", customer=c
        )
        for c in customers
    ]
    for start in range(0, len(records), 5000):
        consent_records_save(records[start : start + 5000])


def build_world(client, size: int, *, no_consent: int = 10, suppressed: int = 5) -> World:
    """``size`` customers in Moscow (the segment); the first ``no_consent`` never consented,
    the next ``suppressed`` are named «Стоп» (the suppression segment); the rest consented."""
    publish_texts(client)
    records = []
    for i in range(size):
        records.append(
            {
                "external_id": f"c{i:06d}",
                "email": f"user{i}@example.ru",
                "phone": f"+7916{i:07d}",
                "city": "Москва",
                "first_name": "Стоп" if no_consent <= i < no_consent + suppressed else "Анна",
            }
        )
    for start in range(0, size, 10_000):
        ingest_records(client=client, kind="customers", records=records[start : start + 10_000])
    customers = {c.external_id: c for c in Customer.objects.for_client(client)}
    ordered = [customers[r["external_id"]] for r in records]
    grant(client, ordered[no_consent:])
    segment = segment_create(
        client=client,
        name="Москва",
        kind="rule",
        definition={"all": [{"attribute": "city", "op": "eq", "value": "Москва"}]},
    )
    suppression = segment_create(
        client=client,
        name="Стоп-лист",
        kind="rule",
        definition={"all": [{"attribute": "first_name", "op": "eq", "value": "Стоп"}]},
    )
    return World(
        client=client,
        segment=segment,
        suppression=suppression,
        customers=customers,
        no_consent={r["external_id"] for r in records[:no_consent]},
        suppressed={r["external_id"] for r in records[no_consent : no_consent + suppressed]},
    )


def point_platforms_at(settings, *, yandex=None, vk=None, mytarget=None) -> None:
    """Point the platforms' addresses (deployment settings, never a destination's data) at
    stubs, as `make run` does with environment variables; the ``settings`` fixture restores
    them after the test. A worker started by ``start_worker`` inherits them."""
    if yandex is not None:
        settings.YANDEX_AUDIENCES_BASE_URL = yandex.base_url
    if vk is not None:
        settings.VK_ADS_BASE_URL = vk.base_url
    if mytarget is not None:
        settings.MYTARGET_BASE_URL = mytarget.base_url


@pytest.fixture
def yandex_stub(settings):
    with YandexAudiencesStub(tokens={YANDEX_TOKEN}, quota_per_minute=None) as stub:
        point_platforms_at(settings, yandex=stub)
        yield stub


@pytest.fixture
def vk_stub(settings):
    """The VK Ads stub, at the address of VK Ads and of myTarget (the same API)."""
    with VkAdsStub(credentials={VK_CLIENT: VK_SECRET}) as stub:
        point_platforms_at(settings, vk=stub, mytarget=stub)
        yield stub


def yandex_destination(client, **extra):
    return destination_create(
        client=client,
        name=extra.pop("name", "Яндекс"),
        platform="yandex_audiences",
        credentials={"token": extra.pop("token", YANDEX_TOKEN)},
        **extra,
    )


def vk_destination(client, platform="vk_ads", **extra):
    return destination_create(
        client=client,
        name=extra.pop("name", platform),
        platform=platform,
        credentials={"client_id": VK_CLIENT, "client_secret": extra.pop("secret", VK_SECRET)},
        **extra,
    )


def make_audience(world: World, destination, **extra):
    return audience_create(
        client=world.client,
        name=extra.pop("name", f"Москва → {destination.name}"),
        segment=world.segment,
        destination=destination,
        suppression_segments=[world.suppression],
        **extra,
    )
