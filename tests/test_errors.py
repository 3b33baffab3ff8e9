"""One error path: every service error is mapped once (its status and ``as_dict()`` body), and
every failure of an API route is JSON: an unexpected exception 500 without internals, a
database outage 503 with Retry-After, an unknown URL 404, a wrong method 405. Portal pages
keep Django's HTML."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.http import require_GET

from agency.api import ApiError
from agency.errors import (
    SERVER_ERROR_MESSAGE,
    ConflictError,
    DatabaseUnavailable,
    ServiceError,
)
from audiences.services import AudienceError
from clients.api import CustomerViewSet
from clients.ingest import BatchError
from clients.normalize import NormalizationError, normalize_email
from consent.services import ConsentError
from consent.transfers import TransferRefused
from integrations.crm.forms import FormParseError
from segments.models import Segment
from segments.rules import RuleError, RuleInvalid
from segments.segmentation import SegmentError, TierLimitError, TransitionUnavailable

RFM_BEST = {"name": "Лучшие", "kind": "rfm", "definition": {"names": ["Champions"]}}
DB_DOWN = {
    "code": "database_unavailable",
    "message": "База данных временно недоступна; повторите запрос через 30 с.",
}


def api_http(raw_key: str | None = None) -> tuple[Client, dict[str, str]]:
    """Django's test client that answers as a server would (no re-raise of a 500's exception)."""
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {raw_key}"} if raw_key else {}
    return Client(raise_request_exception=False), headers


# --------------------------------------------------------------------------------------------
# The class family


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            SegmentError(
                "invalid_definition",
                "Ошибки.",
                errors=[RuleError("all[0]", "не то")],
                extra={"n": 1},
            ),
            400,
            {
                "code": "invalid_definition",
                "message": "Ошибки.",
                "n": 1,
                "errors": [{"path": "all[0]", "message": "не то"}],
            },
        ),
        (
            TierLimitError("tier_limit_segments", "Не больше 5.", extra={"limit": 5}),
            403,
            {"code": "tier_limit_segments", "message": "Не больше 5.", "limit": 5},
        ),
        (
            TransitionUnavailable("no_transition", "Нет матрицы."),
            409,
            {"code": "no_transition", "message": "Нет матрицы."},
        ),
        (
            AudienceError("tier_feature_value_bidding", "С тарифа Advanced."),
            403,
            {"code": "tier_feature_value_bidding", "message": "С тарифа Advanced.", "field": None},
        ),
        (
            AudienceError("invalid_hashing", "Только SHA-256.", field="hashing"),
            400,
            {"code": "invalid_hashing", "message": "Только SHA-256.", "field": "hashing"},
        ),
        (
            ConsentError("no_published_text", "Нет текста."),
            422,
            {"code": "no_published_text", "message": "Нет текста."},
        ),
        (
            TransferRefused("Уведомление не подано.", recipient=None, allowed_from=None),
            422,
            {"code": "cross_border_refused", "message": "Уведомление не подано."},
        ),
        (
            BatchError("unknown_kind", "Нет такого вида."),
            400,
            {"code": "unknown_kind", "message": "Нет такого вида."},
        ),
        (
            NormalizationError("пустой email"),
            400,
            {"code": "invalid_value", "message": "пустой email"},
        ),
        (
            RuleInvalid([RuleError("orders.count", "ожидается объект")]),
            400,
            {
                "code": "invalid_definition",
                "message": "orders.count: ожидается объект",
                "errors": [{"path": "orders.count", "message": "ожидается объект"}],
            },
        ),
        (
            FormParseError("ключ вложен глубже 32 уровней"),
            400,
            {"code": "invalid_body", "message": "ключ вложен глубже 32 уровней"},
        ),
        (
            ApiError("too_many_records", "Много.", status_code=413, extra={"field": "x"}),
            413,
            {"code": "too_many_records", "message": "Много.", "field": "x"},
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_every_domain_error_is_a_service_error_with_its_status_and_body(error, status, body):
    assert isinstance(error, ServiceError)
    assert error.status == status
    assert error.as_dict() == body
    assert str(error) == error.message


def test_errors_that_were_value_errors_still_are():
    """Commands and pure code catch ValueError around these; they keep catching them."""
    with pytest.raises(ValueError, match="некорректный email"):
        normalize_email("not an address")
    for cls in (SegmentError, ConsentError, BatchError, RuleInvalid, FormParseError):
        assert issubclass(cls, ValueError)


# --------------------------------------------------------------------------------------------
# Service errors through real routes


def test_a_service_error_raised_in_a_route_gets_its_status_and_body(api_b, client_b, monkeypatch):
    def busy(**kwargs):
        raise ConflictError("segment_busy", "Сегмент пересчитывается.", extra={"id": 7})

    monkeypatch.setattr("segments.api.segment_create", busy)
    response = api_b.post(
        "/api/v1/segments/", data=json.dumps(RFM_BEST), content_type="application/json"
    )

    assert response.status_code == 409
    assert response.json() == {
        "code": "segment_busy",
        "message": "Сегмент пересчитывается.",
        "id": 7,
    }
    assert not Segment.objects.for_client(client_b).exists()


def test_a_services_own_refusal_reaches_the_api_unconverted(api_a, client_a):
    """bid_modifiers_for_client refuses the Foundation tier through the tier rule
    (clients.tiers.TierLimitError); the view does not catch it, the handler answers its status
    and body, naming the tier that unlocks the feature."""
    response = api_a.get("/api/v1/bid-modifiers/")

    assert response.status_code == 403
    body = response.json()
    assert set(body) == {"code", "message", "tier", "required_tier"}
    assert body["code"] == "tier_feature_value_bidding"
    assert client_a.tier.name in body["message"]
    assert body["tier"] == client_a.tier.code
    assert body["required_tier"] == "advanced"


# --------------------------------------------------------------------------------------------
# Unexpected failures: JSON 500, logged, announced


@pytest.fixture
def broken_customer_filter(monkeypatch) -> None:
    def broken(self, queryset, params):
        raise RuntimeError("internals: password=hunter2")

    monkeypatch.setattr(CustomerViewSet, "filter_by_kind", broken)


@pytest.mark.usefixtures("broken_customer_filter")
def test_an_unexpected_exception_is_a_json_500_without_internals(api_key_a, caplog):
    http, headers = api_http(api_key_a)
    with caplog.at_level(logging.ERROR, logger="agency.errors"):
        response = http.get("/api/v1/customers/", **headers)

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "server_error", "message": SERVER_ERROR_MESSAGE}
    assert "hunter2" not in response.content.decode()
    logged = [r for r in caplog.records if r.name == "agency.errors"]
    assert len(logged) == 1
    assert logged[0].exc_info[0] is RuntimeError
    assert "/api/v1/customers/" in logged[0].getMessage()


@pytest.mark.usefixtures("broken_customer_filter")
def test_an_unexpected_exception_is_still_announced_to_error_reporters(api_key_a):
    """got_request_exception is sent, as for Django's own 500s: the default test client
    re-raises the exception from it (and error reporters hook the same signal)."""
    with pytest.raises(RuntimeError, match="hunter2"):
        Client().get("/api/v1/customers/", HTTP_AUTHORIZATION=f"Api-Key {api_key_a}")


# --------------------------------------------------------------------------------------------
# A database outage: 503 with Retry-After


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database_down(django_db_blocker) -> Iterator[None]:
    """The database server stops answering: the connection is closed and every new one goes
    to a port where nothing listens (a real "connection refused" from the driver). No test
    transaction is open (and none is flushed afterwards); the next test reconnects."""
    port = connection.settings_dict["PORT"]
    with django_db_blocker.unblock():
        connection.close()
        connection.settings_dict["PORT"] = str(_free_port())
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict["PORT"] = port


@pytest.mark.usefixtures("database_down")
def test_a_database_outage_in_a_view_is_503_with_retry_after(caplog):
    http, headers = api_http("cvm_0a1b2c3d_secret")  # the key look-up is the first query
    with caplog.at_level(logging.ERROR, logger="agency.errors"):
        response = http.get("/api/v1/customers/", **headers)

    assert response.status_code == 503
    assert response["Retry-After"] == str(DatabaseUnavailable.retry_after)
    assert response["Content-Type"] == "application/json"
    assert response.json() == DB_DOWN
    assert [r.exc_info[0].__name__ for r in caplog.records if r.name == "agency.errors"] == [
        "OperationalError"
    ]


class QueryingMiddleware:
    """A middleware that reads the database before any view runs (as session or tenant
    middleware does)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        User.objects.exists()
        return self.get_response(request)


@pytest.mark.usefixtures("database_down")
def test_a_database_outage_outside_drf_is_503_under_api_and_a_page_elsewhere(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.test_errors.QueryingMiddleware"]
    http, _headers = api_http()

    api = http.get("/api/v1/customers/")
    page = http.get("/portal/")

    assert api.status_code == 503
    assert api["Retry-After"] == str(DatabaseUnavailable.retry_after)
    assert api.json() == DB_DOWN
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


# --------------------------------------------------------------------------------------------
# Unknown URLs and wrong methods


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_url_is_a_json_404(settings, debug):
    settings.DEBUG = debug
    http, _headers = api_http()

    for url in ("/api/v1/xyz/", "/api/nothing"):
        response = http.get(url)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"code": "not_found", "message": "Не найдено."}

    page = http.get("/nowhere/xyz/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_a_wrong_method_on_an_api_route_is_a_json_405(api_a):
    response = api_a.delete("/api/v1/customers/")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


# --------------------------------------------------------------------------------------------
# Plain Django views under /api/ (no DRF handler): the middleware answers for them


def _plain_refusal(request: HttpRequest) -> HttpResponse:
    raise ConflictError("busy", "Занято.", extra={"id": 3})


def _plain_crash(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("internals")


@require_GET
def _plain_get_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("api/v1/plain/refusal/", _plain_refusal),
    path("api/v1/plain/crash/", _plain_crash),
    path("api/v1/plain/get-only/", _plain_get_only),
]
handler500 = "agency.views.server_error"


@pytest.mark.urls("tests.test_errors")
def test_plain_views_under_api_answer_json_for_every_failure():
    http, _headers = api_http()

    refusal = http.get("/api/v1/plain/refusal/")
    assert refusal.status_code == 409
    assert refusal.json() == {"code": "busy", "message": "Занято.", "id": 3}

    crash = http.get("/api/v1/plain/crash/")
    assert crash.status_code == 500
    assert crash.json() == {"code": "server_error", "message": SERVER_ERROR_MESSAGE}

    wrong_method = http.post("/api/v1/plain/get-only/")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    assert wrong_method["Allow"] == "GET"
    assert http.get("/api/v1/plain/get-only/").content == b"ok"
