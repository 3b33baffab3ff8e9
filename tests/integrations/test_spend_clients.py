"""The Roistat, Calltouch and Yandex Metrica clients against their loopback stubs: auth refused
(Roistat's with HTTP 200), formats the platforms check, 429 retried, uploads read back."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from integrations.calltouch import CalltouchClient
from integrations.http import PlatformError, PlatformUnavailable
from integrations.roistat import RoistatClient
from integrations.yandex_metrica import (
    CLIENT_ID,
    USER_ID,
    OfflineConversion,
    YandexMetricaClient,
    conversions_csv,
)
from tests.stubs.calltouch import CalltouchStub
from tests.stubs.fixtures import FAST_HTTP
from tests.stubs.roistat import RoistatStub
from tests.stubs.yandex_metrica import YandexMetricaStub

FAST = {**FAST_HTTP, "sleep": lambda _seconds: None}
DAY = dt.date(2026, 11, 30)
MSK = dt.timezone(dt.timedelta(hours=3))


@pytest.fixture
def roistat():
    with RoistatStub() as stub:
        stub.days[DAY] = [
            {
                "channel": "direct",
                "title": "Яндекс.Директ",
                "visits": 120,
                "leads": 7,
                "sales": 3,
                "revenue": 45000,
                "marketing_cost": 12345.67,
            },
            {
                "channel": "vk",
                "title": "VK",
                "visits": 40,
                "leads": 1,
                "sales": 0,
                "revenue": 0,
                "marketing_cost": 3000,
            },
        ]
        stub.days[DAY + dt.timedelta(days=1)] = [
            {"channel": "direct", "visits": 1, "marketing_cost": 99}
        ]
        yield stub


def _roistat(stub: RoistatStub, **credentials) -> RoistatClient:
    return RoistatClient(
        credentials or stub.credentials, project=stub.project, base_url=stub.base_url, **FAST
    )


def test_roistat_reads_one_day_per_channel(roistat):
    rows = _roistat(roistat).analytics_day(DAY, tz=MSK)
    by_channel = {row.channel: row for row in rows}
    assert set(by_channel) == {"direct", "vk"}  # the next day's row is not in this day
    direct = by_channel["direct"]
    assert (direct.visits, direct.leads, direct.sales) == (120, 7, 3)
    assert direct.cost == Decimal("12345.67")
    assert direct.revenue == Decimal("45000.00")
    assert direct.title == "Яндекс.Директ"


def test_roistat_refusal_with_http_200_is_an_error(roistat):
    with pytest.raises(PlatformError) as refused:
        _roistat(roistat, api_key="wrong").analytics_day(DAY)
    assert refused.value.status == 200
    assert refused.value.code == "authentication_failed"
    client = RoistatClient(roistat.credentials, project="999", base_url=roistat.base_url, **FAST)
    with pytest.raises(PlatformError) as foreign:
        client.analytics_day(DAY)
    assert foreign.value.code == "access_denied"


def test_roistat_limit_of_20_a_minute_answers_429_and_the_client_retries(roistat):
    assert roistat.quota_per_minute == 20
    client = _roistat(roistat)
    for _ in range(20):
        client.analytics_day(DAY)
    with pytest.raises(PlatformUnavailable):
        client.analytics_day(DAY)  # the minute does not pass: every attempt refused
    refused = [entry for entry in roistat.requests if entry["status"] == 429]
    assert len(refused) == FAST["max_attempts"]
    roistat._quota_calls.clear()  # a minute later
    assert client.analytics_day(DAY)


def test_roistat_faults_are_retried():
    with RoistatStub(fault_rate=0.5, fault_seed=3, fault_kinds=["429", "503"]) as stub:
        stub.days[DAY] = [{"channel": "seo", "visits": 5, "marketing_cost": 0}]
        for _ in range(5):
            assert [r.channel for r in _roistat(stub).analytics_day(DAY)] == ["seo"]
        assert any(entry["fault"] for entry in stub.requests)


@pytest.fixture
def calltouch():
    with CalltouchStub() as stub:
        yield stub


def test_calltouch_reads_calls_with_dates_as_the_api_wants(calltouch):
    at = dt.datetime(2026, 11, 30, 14, 5, tzinfo=MSK)
    calltouch.add_call(call_id=101, phone="79161234567", at=at, duration=75)
    calltouch.add_call(call_id=102, phone="+7 916 000-00-00", at=at, successful=False)
    calltouch.add_call(call_id=103, phone="79160000001", at=at + dt.timedelta(days=3))
    client = CalltouchClient(
        calltouch.credentials, site_id=calltouch.site_id, base_url=calltouch.base_url, **FAST
    )
    calls, unreadable = client.calls(DAY, DAY, tz=MSK)
    assert unreadable == 0
    assert [c.call_id for c in calls] == ["101", "102"]
    assert calls[0].duration == 75
    assert calls[0].status == "successful"
    assert calls[1].status == "unsuccessful"
    assert calls[0].at == at
    assert calls[0].utm_source == "yandex"
    query = calltouch.requests[-1]
    assert query["status"] == 200


def test_calltouch_refuses_a_wrong_client_api_id_and_bad_dates(calltouch):
    client = CalltouchClient(
        {"client_api_id": "wrong"},
        site_id=calltouch.site_id,
        base_url=calltouch.base_url,
        **FAST,
    )
    with pytest.raises(PlatformError) as refused:
        client.calls(DAY, DAY)
    assert refused.value.status == 401
    assert "clientApiId" in refused.value.message
    good = CalltouchClient(
        calltouch.credentials, site_id=calltouch.site_id, base_url=calltouch.base_url, **FAST
    )
    with pytest.raises(PlatformError) as reversed_range:
        good.calls(DAY, DAY - dt.timedelta(days=1))
    assert reversed_range.value.status == 400


@pytest.fixture
def metrica():
    with YandexMetricaStub(processing_delay=0) as stub:
        yield stub


def _conversions(n: int = 2) -> list[OfflineConversion]:
    at = dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=1)
    return [
        OfflineConversion(
            visitor_id=f"16{i:08d}", target="purchase", at=at, price=Decimal("1990.5")
        )
        for i in range(n)
    ]


def test_metrica_upload_then_status_until_processed(metrica):
    client = YandexMetricaClient(metrica.credentials, base_url=metrica.base_url, **FAST)
    content = conversions_csv(_conversions(3), client_id_type=CLIENT_ID)
    assert content.decode().splitlines()[0] == "ClientId,Target,DateTime,Price,Currency"
    uploading = client.upload(metrica.counter, content, client_id_type=CLIENT_ID, comment="x1")
    assert uploading["status"] == "UPLOADED"
    assert uploading["line_quantity"] == 3
    rows = metrica.rows[uploading["id"]]
    assert rows[0]["Price"] == "1990.50"
    assert rows[0]["Currency"] == "RUB"
    assert client.uploading(metrica.counter, uploading["id"])["status"] == "PROCESSED"
    assert client.uploading_by_comment(metrica.counter, "x1")["id"] == uploading["id"]
    assert client.uploading_by_comment(metrica.counter, "other") is None


def test_metrica_refuses_what_the_api_refuses(metrica):
    client = YandexMetricaClient(metrica.credentials, base_url=metrica.base_url, **FAST)
    user_file = conversions_csv(_conversions(), client_id_type=USER_ID)
    with pytest.raises(PlatformError) as wrong_header:
        client.upload(metrica.counter, user_file, client_id_type=CLIENT_ID, comment="h")
    assert wrong_header.value.status == 400
    assert "Header" in wrong_header.value.message
    future = [
        OfflineConversion("1", "t", dt.datetime.now(tz=dt.UTC) + dt.timedelta(hours=2), Decimal(1))
    ]
    with pytest.raises(PlatformError) as in_future:
        client.upload(
            metrica.counter,
            conversions_csv(future, client_id_type=CLIENT_ID),
            client_id_type=CLIENT_ID,
            comment="f",
        )
    assert "in the past" in in_future.value.message
    dollars = [
        OfflineConversion(
            "1", "t", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), Decimal(1), currency="rub"
        )
    ]
    with pytest.raises(PlatformError) as bad_currency:
        client.upload(
            metrica.counter,
            conversions_csv(dollars, client_id_type=CLIENT_ID),
            client_id_type=CLIENT_ID,
            comment="c",
        )
    assert "Currency" in bad_currency.value.message
    with pytest.raises(PlatformError) as foreign:
        client.uploading("1", 1)
    assert foreign.value.status == 403
    stranger = YandexMetricaClient({"token": "nope"}, base_url=metrica.base_url, **FAST)
    with pytest.raises(PlatformError) as unauthorized:
        stranger.uploadings(metrica.counter)
    assert unauthorized.value.status == 401
    assert unauthorized.value.code == "unauthorized"
    assert not metrica.uploadings


def test_metrica_quota_429_is_retried(metrica):
    client = YandexMetricaClient(metrica.credentials, base_url=metrica.base_url, **FAST)
    metrica.quota_per_minute = 1
    content = conversions_csv(_conversions(), client_id_type=CLIENT_ID)
    client.upload(metrica.counter, content, client_id_type=CLIENT_ID, comment="a")
    with pytest.raises(PlatformError):
        client.upload(metrica.counter, content, client_id_type=CLIENT_ID, comment="b")
    assert sum(1 for e in metrica.requests if e["status"] == 429) == FAST["max_attempts"]
    assert len(metrica.uploadings) == 1
