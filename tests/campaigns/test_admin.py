"""Campaigns admin: every page renders for each staff role, account managers see only their
clients, chains saved with inline steps through the services (refusals shown, nothing saved),
presets, start/pause, the funnel on the chain's page, template preview and "send a test to me",
write-only channel credentials, the outbox searchable by customer."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from agency.crypto import secret_decrypt
from campaigns.authoring import channel_settings_save, push_device_register
from campaigns.models import ChannelSettings, Message, MessageTemplate, TriggerChain

from .conftest import make_templates

pytestmark = pytest.mark.django_db


def url(name: str, *args) -> str:
    return reverse(f"admin:campaigns_{name}", args=args)


@pytest.fixture
def world(client_a, client_b, outbox_a, customers_a, templates_b):
    channel_settings_save(
        client=client_a, channel="sms", provider="smsru", credentials={"api_id": "SECRET-API-ID"}
    )
    push_device_register(client=client_a, customer=customers_a[0], provider="rustore", token="t")
    from campaigns.authoring import chain_create

    chain_b = chain_create(
        client=client_b,
        data={"name": "Чужая цепочка", "trigger": "registration"},
        steps=[{"template": templates_b["email"]}],
    )
    return {"chain_a": outbox_a, "chain_b": chain_b}


PAGES = [
    "triggerchain_changelist",
    "triggerchain_add",
    "triggerchain_preset",
    "messagetemplate_changelist",
    "messagetemplate_add",
    "message_changelist",
    "enrollment_changelist",
    "pushdevice_changelist",
    "channelstop_changelist",
    "campaignsettings_changelist",
    "channelsettings_changelist",
    "channelsettings_add",
]


@pytest.mark.parametrize("role", ["agency_admin", "account_manager", "analyst"])
def test_pages_render_for_each_role(client, request, role, world, client_a):
    user = request.getfixturevalue(role)
    client.force_login(user)
    writes = role != "analyst"
    for name in PAGES:
        response = client.get(url(name))
        expected = 200 if writes or not name.endswith(("_add", "_preset")) else 403
        assert response.status_code == expected, (role, name, response.status_code)
    chain = world["chain_a"]
    page = client.get(url("triggerchain_change", chain.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert "chain-funnel" in html
    assert ("chain-activate" in html) is writes
    template = MessageTemplate.objects.for_client(client_a).get(name="Письмо")
    assert client.get(url("messagetemplate_change", template.pk)).status_code == 200
    preview = client.get(url("messagetemplate_preview", template.pk))
    assert preview.status_code == 200
    message = Message.objects.for_client(client_a).first()
    assert client.get(url("message_change", message.pk)).status_code == 200
    settings_row = ChannelSettings.objects.for_client(client_a).get()
    settings_page = client.get(url("channelsettings_change", settings_row.pk)).content.decode()
    assert "SECRET-API-ID" not in settings_page


def test_account_manager_sees_only_their_clients(client, account_manager, world):
    client.force_login(account_manager)
    listed = client.get(url("triggerchain_changelist")).content.decode()
    assert "Скучаем" in listed
    assert "Чужая цепочка" not in listed
    assert client.get(url("triggerchain_change", world["chain_b"].pk)).status_code in (302, 404)
    assert client.post(url("triggerchain_activate", world["chain_b"].pk)).status_code == 404
    assert TriggerChain.objects.for_client(world["chain_b"].client_id).get().status == "draft"


def test_chain_funnel_on_its_page(client, agency_admin, world):
    client.force_login(agency_admin)
    chain = world["chain_a"]
    TriggerChain.objects.for_client(chain.client_id).filter(pk=chain.pk).update(srm_p_value=0.001)
    html = client.get(url("triggerchain_change", chain.pk)).content.decode()
    assert "Вошли: <b>10</b> (основная группа 8, контрольная 2)" in html
    assert "нет согласия: 2" in html
    assert "доли групп не совпадают" in html


def _chain_post(client_obj, template, **extra):
    data = {
        "client": client_obj.pk,
        "name": "Из админки",
        "description": "",
        "kind": "marketing",
        "trigger": "days_since_purchase",
        "trigger_days": "30",
        "reentry": "never",
        "holdout_percent": "10",
        "conversion_window_days": "30",
        "goal": "purchase",
        "priority": "100",
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "steps-0-position": "1",
        "steps-0-delay_hours": "0",
        "steps-0-delay_from": "previous",
        "steps-0-template": str(template["email"].pk),
        "steps-0-condition": "always",
        "steps-1-position": "2",
        "steps-1-delay_hours": "24",
        "steps-1-delay_from": "previous",
        "steps-1-template": str(template["sms"].pk),
        "steps-1-condition": "previous_not_opened",
    }
    data.update(extra)
    return data


def test_chain_with_steps_saved_through_the_service(client, agency_admin, client_a, client_b):
    client.force_login(agency_admin)
    templates_a = make_templates(client_a)
    # Foundation: the SMS step is refused by the tier rule, shown on the page, nothing saved.
    response = client.post(url("triggerchain_add"), _chain_post(client_a, templates_a))
    assert response.status_code == 200
    assert "Омниканальные триггеры доступны с тарифа Advanced CVM" in response.content.decode()
    assert not TriggerChain.objects.for_client(client_a).exists()

    templates_b = make_templates(client_b)
    response = client.post(url("triggerchain_add"), _chain_post(client_b, templates_b))
    assert response.status_code == 302, response.content.decode()[:3000]
    chain = TriggerChain.objects.for_client(client_b).get(name="Из админки")
    steps = list(chain.steps.order_by("position").values_list("channel", "condition"))
    assert steps == [("email", "always"), ("sms", "previous_not_opened")]
    from agency.models import AuditLogEntry

    assert AuditLogEntry.objects.filter(action="trigger_chain_created", object_id=str(chain.pk))
    assert not AuditLogEntry.objects.filter(action="admin_add", object_id=str(chain.pk)).exists()

    start = client.post(url("triggerchain_activate", chain.pk))
    assert start.status_code == 302
    chain.refresh_from_db()
    assert chain.status == "active"
    client.post(
        url("triggerchain_changelist"),
        {"action": "pause_chains", "_selected_action": [chain.pk]},
    )
    chain.refresh_from_db()
    assert chain.status == "paused"


def test_analyst_cannot_start_a_chain(client, analyst, world):
    client.force_login(analyst)
    chain = world["chain_a"]
    assert client.post(url("triggerchain_activate", chain.pk)).status_code == 403
    assert TriggerChain.objects.for_client(chain.client_id).get().status == "draft"


def test_chain_from_preset(client, account_manager, client_a):
    client.force_login(account_manager)
    response = client.post(
        url("triggerchain_preset"), {"client": client_a.pk, "preset": "cascade", "activate": "on"}
    )
    assert response.status_code == 302
    chain = TriggerChain.objects.for_client(client_a).get()
    assert chain.status == "active"
    assert chain.name == "Каскад: email → SMS → push (только email)"
    assert set(chain.steps.values_list("channel", flat=True)) == {"email"}


def test_template_unknown_variable_is_a_form_error(client, account_manager, client_a):
    client.force_login(account_manager)
    response = client.post(
        url("messagetemplate_add"),
        {
            "client": client_a.pk,
            "name": "Т",
            "channel": "email",
            "subject": "Тема",
            "body": "{{ passport_number }}",
        },
    )
    assert response.status_code == 200
    assert "«passport_number»" in response.content.decode()
    assert not MessageTemplate.objects.for_client(client_a).exists()


def test_preview_and_test_send(client, account_manager, client_a, customers_a, templates_a):
    account_manager.email = "manager@agency.ru"
    account_manager.save()
    client.force_login(account_manager)
    template = templates_a["email"]
    preview = client.get(url("messagetemplate_preview", template.pk)).content.decode()
    assert "Имя0, промокод SALE10." in preview  # a sample customer of the client
    assert "/consent/u/" in preview  # a real unsubscribe link
    response = client.post(url("messagetemplate_test_send", template.pk))
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["manager@agency.ru"]
    assert sent.subject == "[ТЕСТ] Имя0, скидка"
    assert sent.extra_headers["X-CVM-Test"] == "1"
    html, mimetype = sent.alternatives[0]
    assert mimetype == "text/html"
    assert "Тестовая отправка" in html
    assert "Имя0" in html


def test_channel_credentials_are_write_only(client, agency_admin, client_a):
    client.force_login(agency_admin)
    response = client.post(
        url("channelsettings_add"),
        {
            "client": client_a.pk,
            "channel": "email",
            "provider": "unisender",
            "sender": "news@shop.ru",
            "sender_name": "Магазин",
            "is_active": "on",
            "credentials": '{"api_key": "UNI-SECRET"}',
        },
    )
    assert response.status_code == 302
    saved = ChannelSettings.objects.for_client(client_a).get()
    assert secret_decrypt(saved.credentials_encrypted) == {"api_key": "UNI-SECRET"}
    page = client.get(url("channelsettings_change", saved.pk)).content.decode()
    assert "UNI-SECRET" not in page


def test_outbox_search_by_customer(client, agency_admin, world, customers_a):
    client.force_login(agency_admin)
    found = client.get(url("message_changelist"), {"q": "PERSON3@example.ru"})
    rows = list(found.context["cl"].result_list)
    assert [m.customer_id for m in rows] == [customers_a[3].pk]
    by_phone = client.get(url("message_changelist"), {"q": "8 (916) 000-00-04"})
    assert [m.customer_id for m in by_phone.context["cl"].result_list] == [customers_a[4].pk]
    by_state = client.get(url("message_changelist"), {"state": "suppressed"})
    assert len(by_state.context["cl"].result_list) == 2


def test_editing_a_chain_and_channel_settings(client, agency_admin, client_b, templates_b):
    from campaigns.authoring import chain_create

    client.force_login(agency_admin)
    chain = chain_create(
        client=client_b,
        data={"name": "Правка", "trigger": "registration"},
        steps=[{"template": templates_b["email"]}],
    )
    step = chain.steps.get()
    data = _chain_post(client_b, templates_b, name="Правка 2")
    data.pop("client")
    data.update(
        {
            "steps-TOTAL_FORMS": "1",
            "steps-INITIAL_FORMS": "1",
            "steps-0-id": str(step.pk),
            "steps-0-chain": str(chain.pk),
            "steps-0-delay_hours": "5",
        }
    )
    for key in [k for k in data if k.startswith("steps-1-")]:
        data.pop(key)
    response = client.post(url("triggerchain_change", chain.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    chain.refresh_from_db()
    assert chain.name == "Правка 2"
    assert list(chain.steps.values_list("delay_hours", flat=True)) == [5]

    saved = channel_settings_save(
        client=client_b, channel="sms", provider="smsru", credentials={"api_id": "OLD"}
    )
    response = client.post(
        url("channelsettings_change", saved.pk),
        {"provider": "smsru", "sender": "", "sender_name": "SHOP", "is_active": "on"},
    )
    assert response.status_code == 302
    saved.refresh_from_db()
    assert saved.sender_name == "SHOP"
    assert secret_decrypt(saved.credentials_encrypted) == {"api_id": "OLD"}
