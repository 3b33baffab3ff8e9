"""Campaigns API: templates (unknown variable → 400 naming it), chains with nested steps and
their funnel, activate/pause with the tier rule, the outbox and its filters, a customer's
messages, push devices, and another client's ids answered 404."""

from __future__ import annotations

import json

import pytest

from campaigns.models import Message, MessageTemplate, PushDevice, TriggerChain
from clients.services import api_key_create

pytestmark = pytest.mark.django_db


def post(api, url, body):
    return api.post(url, data=json.dumps(body), content_type="application/json")


def patch(api, url, body):
    return api.patch(url, data=json.dumps(body), content_type="application/json")


def test_template_with_an_unknown_variable_is_400_naming_it(api_a, client_a):
    response = post(
        api_a,
        "/api/v1/templates/",
        {"name": "Т", "channel": "email", "subject": "Привет", "body": "{{ customer.email }}"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "template_unknown_variable"
    assert body["field"] == "body"
    assert body["variable"] == "customer"
    assert "«customer»" in body["message"]
    assert not MessageTemplate.objects.for_client(client_a).exists()

    response = post(
        api_a, "/api/v1/templates/", {"name": "Т", "channel": "sms", "body": "{% load static %}"}
    )
    assert (response.status_code, response.json()["code"]) == (400, "template_syntax")


def test_template_crud(api_a, client_a):
    created = post(
        api_a,
        "/api/v1/templates/",
        {"name": "Т", "channel": "push", "subject": "Скидка", "body": "{{ first_name }}"},
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert api_a.get("/api/v1/templates/").json()["results"][0]["id"] == pk
    changed = patch(api_a, f"/api/v1/templates/{pk}/", {"body": "{{ first_name }}, привет"})
    assert changed.json()["body"] == "{{ first_name }}, привет"
    refused = patch(api_a, f"/api/v1/templates/{pk}/", {"subject": "{{ phone }}"})
    assert (refused.status_code, refused.json()["field"]) == (400, "subject")
    assert api_a.delete(f"/api/v1/templates/{pk}/").status_code == 204
    assert not MessageTemplate.objects.for_client(client_a).exists()


def test_chain_crud_with_nested_steps_and_status(api_b, client_b, templates_b):
    body = {
        "name": "Каскад",
        "trigger": "days_since_purchase",
        "trigger_days": 30,
        "holdout_percent": 10,
        "steps": [
            {"template": templates_b["email"].pk},
            {
                "template": templates_b["sms"].pk,
                "delay_hours": 24,
                "condition": "previous_not_opened",
            },
            {"template": templates_b["push"].pk, "condition": "previous_not_clicked"},
        ],
    }
    created = post(api_b, "/api/v1/chains/", body)
    assert created.status_code == 201, created.json()
    chain = created.json()
    assert chain["status"] == "draft"
    assert [(s["position"], s["channel"]) for s in chain["steps"]] == [
        (1, "email"),
        (2, "sms"),
        (3, "push"),
    ]
    assert chain["funnel"]["enrolled"] == {"treatment": 0, "holdout": 0, "total": 0}
    assert len(chain["funnel"]["steps"]) == 3

    url = f"/api/v1/chains/{chain['id']}/"
    changed = patch(
        api_b,
        url,
        {"name": "Каскад 2", "steps": [{"template": templates_b["email"].pk, "delay_hours": 2}]},
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["name"] == "Каскад 2"
    assert [s["delay_hours"] for s in changed.json()["steps"]] == [2]

    activated = api_b.post(url + "activate/")
    assert activated.status_code == 200
    assert activated.json()["status"] == "active"
    assert activated.json()["activated_at"]
    paused = api_b.post(url + "pause/")
    assert paused.json()["status"] == "paused"
    assert TriggerChain.objects.for_client(client_b).get().status == "paused"
    listed = api_b.get("/api/v1/chains/").json()["results"]
    assert [c["name"] for c in listed] == ["Каскад 2"]


def test_chain_refusals(api_a, client_a, templates_a, templates_b):
    sms = post(
        api_a,
        "/api/v1/chains/",
        {"name": "Ц", "trigger": "registration", "steps": [{"template": templates_a["sms"].pk}]},
    )
    assert (sms.status_code, sms.json()["code"]) == (403, "tier_feature_omnichannel")
    foreign = post(
        api_a,
        "/api/v1/chains/",
        {"name": "Ц", "trigger": "registration", "steps": [{"template": templates_b["email"].pk}]},
    )
    assert foreign.status_code == 400
    assert (foreign.json()["code"], foreign.json()["field"]) == (
        "template_not_found",
        "steps[0].template",
    )
    incomplete = post(api_a, "/api/v1/chains/", {"name": "Ц", "trigger": "days_since_purchase"})
    assert (incomplete.json()["code"], incomplete.json()["field"]) == (
        "trigger_incomplete",
        "trigger_days",
    )
    assert not TriggerChain.objects.for_client(client_a).exists()


def test_fourth_active_chain_on_foundation_is_403_with_the_tier_sentence(api_a, templates_a):
    ids = []
    for i in range(4):
        response = post(
            api_a,
            "/api/v1/chains/",
            {
                "name": f"Ц{i}",
                "trigger": "registration",
                "steps": [{"template": templates_a["email"].pk}],
            },
        )
        ids.append(response.json()["id"])
    for pk in ids[:3]:
        assert api_a.post(f"/api/v1/chains/{pk}/activate/").status_code == 200
    refused = api_a.post(f"/api/v1/chains/{ids[3]}/activate/")
    assert refused.status_code == 403
    body = refused.json()
    assert body["code"] == "tier_limit_trigger_chains"
    assert body["message"].startswith("На тарифе Foundation не больше 3 триггерных цепочек")
    assert (body["tier"], body["limit"], body["required_tier"]) == ("foundation", 3, "advanced")


def test_funnel_counts_and_message_filters(api_a, outbox_a, customers_a):
    funnel = api_a.get(f"/api/v1/chains/{outbox_a.pk}/").json()["funnel"]
    assert funnel["enrolled"] == {"treatment": 8, "holdout": 2, "total": 10}
    assert funnel["converted"] == {"treatment": 1, "holdout": 1}
    step = funnel["steps"][0]
    expected = {
        "queued": 1,
        "sent": 4,
        "delivered": 3,
        "opened": 2,
        "clicked": 1,
        "suppressed": 2,
        "failed": 1,
        "holdout": 2,
    }
    assert {k: step[k] for k in expected} == expected
    assert step["suppressed_by_reason"] == {"нет согласия": 2}

    def ids(query):
        response = api_a.get("/api/v1/messages/" + query)
        assert response.status_code == 200, response.json()
        return {m["customer_external_id"] for m in response.json()["results"]}

    assert len(ids("")) == 10
    assert ids("?state=suppressed") == {"c5", "c6"}
    assert ids(f"?chain={outbox_a.pk}&state=clicked") == {"c4"}
    assert ids(f"?customer={customers_a[3].pk}") == {"c3"}
    assert ids("?customer_external_id=c7") == {"c7"}
    assert ids("?channel=sms") == set()
    assert ids(f"?chain={outbox_a.pk + 1000}") == set()
    bad = api_a.get("/api/v1/messages/?state=nonsense")
    assert (bad.status_code, bad.json()["code"], bad.json()["field"]) == (
        400,
        "invalid_filter",
        "state",
    )
    assert api_a.get("/api/v1/messages/?chain=x").status_code == 400

    own = api_a.get(f"/api/v1/customers/{customers_a[4].pk}/messages/").json()["results"]
    assert [(m["state"], m["step"]) for m in own] == [("clicked", 1)]


def test_push_devices_api(api_a, client_a, customers_a):
    created = post(
        api_a,
        "/api/v1/push-devices/",
        {"customer_external_id": "c1", "provider": "rustore", "token": "rs-token"},
    )
    assert created.status_code == 201, created.json()
    assert "token" not in created.json()
    again = post(
        api_a,
        "/api/v1/push-devices/",
        {"customer": customers_a[2].pk, "provider": "rustore", "token": "rs-token"},
    )
    assert again.status_code == 200
    assert again.json()["customer_external_id"] == "c2"
    web = post(
        api_a,
        "/api/v1/push-devices/",
        {
            "customer_external_id": "c1",
            "provider": "webpush",
            "token": {"endpoint": "http://10.0.0.1/", "keys": {"p256dh": "a", "auth": "b"}},
        },
    )
    assert (web.status_code, web.json()["code"]) == (400, "invalid_subscription")
    missing = post(
        api_a,
        "/api/v1/push-devices/",
        {"customer_external_id": "nobody", "provider": "rustore", "token": "x"},
    )
    assert missing.status_code == 400
    pk = created.json()["id"]
    assert api_a.delete(f"/api/v1/push-devices/{pk}/").status_code == 204
    assert not PushDevice.objects.for_client(client_a).exists()


def test_another_clients_ids_are_404_on_every_new_route(
    api_b, client_a, outbox_a, customers_a, templates_a
):
    from campaigns.authoring import push_device_register

    device, _ = push_device_register(
        client=client_a, customer=customers_a[0], provider="rustore", token="t"
    )
    message = Message.objects.for_client(client_a).first()
    routes = [
        ("get", f"/api/v1/chains/{outbox_a.pk}/"),
        ("patch", f"/api/v1/chains/{outbox_a.pk}/"),
        ("post", f"/api/v1/chains/{outbox_a.pk}/activate/"),
        ("post", f"/api/v1/chains/{outbox_a.pk}/pause/"),
        ("post", f"/api/v1/chains/{outbox_a.pk}/archive/"),
        ("get", f"/api/v1/chains/{outbox_a.pk}/activate/"),  # a method it does not take
        ("get", f"/api/v1/templates/{templates_a['email'].pk}/"),
        ("patch", f"/api/v1/templates/{templates_a['email'].pk}/"),
        ("delete", f"/api/v1/templates/{templates_a['email'].pk}/"),
        ("get", f"/api/v1/messages/{message.pk}/"),
        ("get", f"/api/v1/customers/{customers_a[0].pk}/messages/"),
        ("get", f"/api/v1/push-devices/{device.pk}/"),
        ("delete", f"/api/v1/push-devices/{device.pk}/"),
    ]
    for method, url in routes:
        response = getattr(api_b, method)(url, data={}, format="json")
        assert response.status_code == 404, (method, url, response.status_code)
        assert response.json()["code"] == "not_found"
    assert TriggerChain.objects.for_client(client_a).get().status == "draft"
    assert MessageTemplate.objects.for_client(client_a).count() == 3
    assert PushDevice.objects.for_client(client_a).count() == 1
    for url in ("/api/v1/chains/", "/api/v1/templates/", "/api/v1/messages/"):
        assert api_b.get(url).json()["results"] == []


def test_read_only_key_cannot_write(make_api, client_a, chain_a):
    _key, raw = api_key_create(client=client_a, name="ro", scopes=["read"])
    api = make_api(raw)
    assert api.get("/api/v1/chains/").status_code == 200
    assert api.post(f"/api/v1/chains/{chain_a.pk}/activate/").status_code == 403
