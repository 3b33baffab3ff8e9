"""Every API route walked with another client's key: 404 or 403, never data."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from agency.tenancy import TenantScopeError
from campaigns.authoring import chain_create, push_device_register, template_create
from campaigns.models import Enrollment, Message
from clients.models import Customer, Event, Order
from segments.rfm import SEGMENTS
from segments.segmentation import segment_create
from segments.services import scoring_run_request

pytestmark = pytest.mark.django_db


def _api_routes():
    """(pattern string, has_pk) for every route under api/v1/ except webhooks (no key auth)."""

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    for route in walk(get_resolver().url_patterns):
        if route.startswith("api/v1/") and "webhooks" not in route and "format" not in route:
            yield route


@pytest.fixture
def data_a(api_a, client_a):
    api_a.post(
        "/api/v1/customers/bulk/",
        data=json.dumps([{"external_id": "a1", "email": "a1@example.ru"}]),
        content_type="application/json",
    )
    api_a.post(
        "/api/v1/orders/bulk/",
        data=json.dumps(
            [
                {
                    "external_id": "oa",
                    "customer_external_id": "a1",
                    "placed_at": "2025-01-01",
                    "amount": 5,
                }
            ]
        ),
        content_type="application/json",
    )
    api_a.post(
        "/api/v1/events/bulk/",
        data=json.dumps(
            [
                {
                    "external_id": "ea",
                    "customer_external_id": "a1",
                    "type": "visit",
                    "occurred_at": "2025-01-01",
                }
            ]
        ),
        content_type="application/json",
    )
    segment = segment_create(
        client=client_a, name="Все RFM", kind="rfm", definition={"names": list(SEGMENTS)}
    )
    customer = Customer.objects.for_client(client_a).get()
    template = template_create(
        client=client_a, name="Письмо", channel="email", subject="Тема", body="{{ first_name }}"
    )
    chain = chain_create(
        client=client_a,
        data={"name": "Цепочка", "trigger": "registration"},
        steps=[{"template": template}],
    )
    enrollment = Enrollment.objects.create(
        client=client_a, chain=chain, customer=customer, arm="treatment"
    )
    message = Message.objects.create(
        client=client_a,
        enrollment=enrollment,
        step=chain.steps.get(),
        chain=chain,
        customer=customer,
        channel="email",
        arm="treatment",
        address=customer.email,
    )
    device, _created = push_device_register(
        client=client_a, customer=customer, provider="rustore", token="token-a"
    )
    return {
        "customer": customer,
        "order": Order.objects.for_client(client_a).get(),
        "event": Event.objects.for_client(client_a).get(),
        "segment": segment,
        "run": scoring_run_request(client=client_a, source="api"),
        "chain": chain,
        "template": template,
        "message": message,
        "push-device": device,
    }


def _concrete(route: str, data) -> str:
    """A URL for the route, with client A's object id where the route takes one."""
    url = "/" + route.replace("^", "")
    for name, obj in data.items():
        if f"/{name}s/" in url or (name == "run" and "/scoring/runs/" in url):
            # Regex groups (?P<pk>...) and path converters <int:pk> alike.
            url = re.sub(r"\(\?P<\w+>[^)]*\)|<(?:\w+:)?\w+>", str(obj.pk), url)
    return url.replace("$", "")


def test_other_clients_key_never_sees_data(api_b, data_a, client_a):
    routes = list(_api_routes())
    assert any("bulk" in r for r in routes)
    assert any("pk" in r for r in routes)
    assert any("consents" in r for r in routes)
    for new in ("chains/", "templates/", "messages/", "push-devices/", "(?P<pk>[0-9]+)/messages"):
        assert any(new in r for r in routes), new
    checked = 0
    for route in routes:
        url = _concrete(route, data_a)
        response = api_b.get(url)
        if re.search(r"\(\?P<|<(\w+:)?\w+>", route):
            # 405: an action route without GET (a POST such as rollback) reads nothing.
            assert response.status_code in (404, 405), (url, response.status_code)
            if response.status_code == 404:
                assert response.json()["code"] == "not_found"
        elif response.status_code == 200:
            assert response.json().get("results", []) == [], url
        elif response.status_code == 400:
            # A report that needs its period (from/to) refuses before it reads anything.
            assert response.json()["code"] in ("invalid", "invalid_date", "invalid_period"), url
        else:
            assert response.status_code in (403, 404, 405), (url, response.status_code)
        body = response.content.decode()
        for private in ("a1@example.ru", '"oa"', '"ea"'):
            assert private not in body, url
        checked += 1
    assert checked >= 9


def test_bulk_with_other_clients_key_touches_only_its_client(api_b, data_a, client_a, client_b):
    response = api_b.post(
        "/api/v1/orders/bulk/",
        data=json.dumps(
            [
                {
                    "external_id": "oa",
                    "customer_external_id": "a1",
                    "placed_at": "2025-01-01",
                    "amount": 9,
                }
            ]
        ),
        content_type="application/json",
    )
    # Client A's customer a1 does not exist for client B.
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "customer_external_id"
    assert Order.objects.for_client(client_a).get().amount == 5
    assert Order.objects.for_client(client_b).count() == 0


def test_unscoped_query_fails_closed(data_a):
    with pytest.raises(TenantScopeError):
        list(Customer.objects.all())
    with pytest.raises(TenantScopeError):
        Order.objects.filter(amount__gt=0).count()
    with pytest.raises(TenantScopeError):
        Event.objects.exclude(client=data_a["event"].client_id).exists()
    assert Customer.objects.unscoped().count() == 1


def test_access_function_same_404_for_missing_and_foreign(client_a, client_b, data_a):
    from django.http import Http404

    from agency.tenancy import get_scoped_object_or_404

    with pytest.raises(Http404) as foreign:
        get_scoped_object_or_404(Customer, client_b, pk=data_a["customer"].pk)
    with pytest.raises(Http404) as missing:
        get_scoped_object_or_404(Customer, client_b, pk=10**9)
    assert str(foreign.value) == str(missing.value)
    assert (
        get_scoped_object_or_404(Customer, client_a, pk=data_a["customer"].pk).external_id == "a1"
    )
