"""Authoring services: template rules per channel, chain validation, the tier rule (active chain
count, omnichannel steps, churn probability), status changes, presets on every tier, channel
settings with encrypted credentials and their data recipient."""

from __future__ import annotations

import pytest

from agency.crypto import secret_decrypt
from agency.errors import ServiceError
from agency.models import AuditLogEntry
from campaigns.authoring import (
    chain_activate,
    chain_archive,
    chain_create,
    chain_pause,
    chain_update,
    channel_settings_save,
    push_device_register,
    template_create,
    template_delete,
    template_update,
)
from campaigns.models import ChainStep, ChannelSettings, MessageTemplate, TriggerChain
from campaigns.presets import PRESETS, chain_from_preset
from clients.services import client_create
from clients.tiers import TierLimitError
from consent.models import DataRecipient
from segments.segmentation import segment_create

from .conftest import make_templates

pytestmark = pytest.mark.django_db


def refused(call, **kwargs) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call(**kwargs)
    return caught.value


# --------------------------------------------------------------------------------------------
# Templates


def test_template_rules_per_channel(client_a):
    email = refused(template_create, client=client_a, name="x", channel="email", body="Текст")
    assert (email.code, email.field) == ("subject_required", "subject")
    push = refused(template_create, client=client_a, name="x", channel="push", body="Текст")
    assert (push.code, push.field) == ("title_required", "subject")
    long_sms = refused(
        template_create,
        client=client_a,
        name="x",
        channel="sms",
        body="Ж" * 530 + "{{ first_name }}",  # 540 UCS-2 characters: 9 parts
    )
    assert (long_sms.code, long_sms.field) == ("sms_too_long", "body")
    assert "8" in long_sms.message
    unknown = refused(template_create, client=client_a, name="x", channel="sms", body="{{ phone }}")
    assert (unknown.code, unknown.extra["variable"]) == ("template_unknown_variable", "phone")
    assert not MessageTemplate.objects.for_client(client_a).exists()
    # Within 8 segments with long sample values: accepted.
    ok = template_create(client=client_a, name="x", channel="sms", body="Ж" * 400)
    assert ok.pk
    assert AuditLogEntry.objects.filter(action="message_template_created").exists()


def test_template_update_checks_and_keeps_the_channel_of_a_used_template(client_a, chain_a):
    template = chain_a.steps.get(position=1).template
    error = refused(template_update, template=template, body="{{ unknown_thing }}")
    assert error.code == "template_unknown_variable"
    template.refresh_from_db()
    assert "unknown_thing" not in template.body
    error = refused(template_update, template=template, channel="push")
    assert error.code == "template_in_use"
    updated = template_update(template=template, subject="Новая тема {{ first_name }}")
    assert (
        MessageTemplate.objects.for_client(client_a)
        .get(pk=updated.pk)
        .subject.startswith("Новая тема")
    )
    assert refused(template_delete, template=template).status == 409


# --------------------------------------------------------------------------------------------
# Chains


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ({"trigger": "days_since_purchase"}, "trigger_incomplete", "trigger_days"),
        ({"trigger": "event"}, "trigger_incomplete", "trigger_event_type"),
        ({"trigger": "segment_entered"}, "trigger_incomplete", "trigger_segment"),
        ({"trigger": "lifecycle_stage"}, "trigger_incomplete", "trigger_lifecycle_stage"),
        (
            {"trigger": "lifecycle_stage", "trigger_lifecycle_stage": "Never"},
            "invalid_stage",
            "trigger_lifecycle_stage",
        ),
        (
            {"trigger": "registration", "reentry": "after_days"},
            "reentry_days_required",
            "reentry_days",
        ),
        ({"trigger": "registration", "goal": "event"}, "goal_event_required", "goal_event_type"),
        ({"trigger": "registration", "holdout_percent": 60}, "invalid_holdout", "holdout_percent"),
        ({"trigger": "nonsense"}, "invalid_trigger", "trigger"),
    ],
)
def test_trigger_fields_are_required_per_trigger(client_a, data, code, field):
    error = refused(chain_create, client=client_a, data={"name": "Ц", **data}, steps=[])
    assert (error.code, error.field) == (code, field)
    assert not TriggerChain.objects.for_client(client_a).exists()


def test_steps_are_checked(client_a, client_b, templates_a, templates_b):
    data = {"name": "Ц", "trigger": "registration"}
    email = templates_a["email"]
    cases = [
        ([{"template": email, "position": 2}], "invalid_positions", "steps"),
        (
            [{"template": email, "position": 1}, {"template": email, "position": 3}],
            "invalid_positions",
            "steps",
        ),
        ([{"template": email, "channel": "sms"}], "channel_mismatch", "steps[0].channel"),
        ([{"template": templates_b["email"]}], "template_not_found", "steps[0].template"),
        (
            [{"template": email, "condition": "previous_not_opened"}],
            "condition_needs_previous",
            "steps[0].condition",
        ),
    ]
    for steps, code, field in cases:
        error = refused(chain_create, client=client_a, data=data, steps=steps)
        assert (error.code, error.field) == (code, field), steps
    assert not TriggerChain.objects.for_client(client_a).exists()


def test_segments_must_be_the_clients_own(client_a, client_b, templates_a):
    foreign = segment_create(
        client=client_b, name="Чужой", kind="rfm", definition={"names": ["Champions"]}
    )
    error = refused(
        chain_create,
        client=client_a,
        data={"name": "Ц", "trigger": "segment_entered", "trigger_segment": foreign},
        steps=[{"template": templates_a["email"]}],
    )
    assert error.field == "trigger_segment"


def test_cascade_condition_after_sms_needs_clicks(client_b, templates_b):
    error = refused(
        chain_create,
        client=client_b,
        data={"name": "Ц", "trigger": "registration"},
        steps=[
            {"template": templates_b["sms"]},
            {"template": templates_b["push"], "condition": "previous_not_opened"},
        ],
    )
    assert error.code == "opens_not_tracked"
    chain = chain_create(
        client=client_b,
        data={"name": "Ц", "trigger": "registration"},
        steps=[
            {"template": templates_b["email"]},
            {"template": templates_b["sms"], "condition": "previous_not_opened", "delay_hours": 24},
            {"template": templates_b["push"], "condition": "previous_not_clicked"},
        ],
    )
    assert [s.channel for s in chain.steps.order_by("position")] == ["email", "sms", "push"]


def test_an_sms_step_is_refused_on_foundation(client_a, templates_a):
    with pytest.raises(TierLimitError) as caught:
        chain_create(
            client=client_a,
            data={"name": "Ц", "trigger": "registration"},
            steps=[{"template": templates_a["email"]}, {"template": templates_a["sms"]}],
        )
    error = caught.value
    assert (error.status, error.code) == (403, "tier_feature_omnichannel")
    assert "Омниканальные триггеры доступны с тарифа Advanced CVM" in error.message
    assert "у клиента тариф Foundation" in error.message
    assert not TriggerChain.objects.for_client(client_a).exists()


def test_churn_probability_needs_predictive(client_a, templates_a):
    with pytest.raises(TierLimitError) as caught:
        chain_create(
            client=client_a,
            data={"name": "Ц", "trigger": "churn_probability", "trigger_churn_probability": 0.6},
            steps=[{"template": templates_a["email"]}],
        )
    assert caught.value.code == "tier_feature_predictive"


def test_fourth_active_chain_on_foundation_is_refused(client_a, templates_a):
    chains = [
        chain_create(
            client=client_a,
            data={"name": f"Ц{i}", "trigger": "registration"},
            steps=[{"template": templates_a["email"]}],
        )
        for i in range(5)
    ]
    for chain in chains[:3]:
        chain = chain_activate(chain=chain)
        assert chain.status == "active"
        assert chain.activated_at is not None
    with pytest.raises(TierLimitError) as caught:
        chain_activate(chain=chains[3])
    error = caught.value
    assert (error.status, error.code) == (403, "tier_limit_trigger_chains")
    assert error.message.startswith(
        "На тарифе Foundation не больше 3 триггерных цепочек, сейчас 3."
    )
    assert "До 10 — с тарифа Advanced CVM." in error.message
    assert TriggerChain.objects.for_client(client_a).get(pk=chains[3].pk).status == "draft"
    # Pausing one frees a place; drafts and paused chains do not count.
    chain_pause(chain=chains[0])
    assert chain_activate(chain=chains[3]).status == "active"


def test_status_changes(client_a, chain_a):
    empty = chain_create(client=client_a, data={"name": "Пусто", "trigger": "registration"})
    assert refused(chain_activate, chain=empty).code == "steps_required"
    assert refused(chain_pause, chain=chain_a).code == "invalid_status"  # a draft is not running
    chain_activate(chain=chain_a)
    chain_archive(chain=chain_a)
    assert refused(chain_activate, chain=chain_a).code == "invalid_status"
    assert refused(chain_update, chain=chain_a, data={"name": "Другое"}).code == "chain_archived"
    actions = list(
        AuditLogEntry.objects.filter(object_id=str(chain_a.pk), action__startswith="trigger_chain")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == [
        "trigger_chain_created",
        "trigger_chain_activated",
        "trigger_chain_archived",
    ]


def test_chain_update_upserts_steps_and_keeps_steps_with_messages(client_a, outbox_a, templates_a):
    chain = chain_update(
        chain=outbox_a,
        data={"holdout_percent": 20},
        steps=[
            {"template": templates_a["email"], "delay_hours": 1},
            {"template": templates_a["email"], "delay_hours": 5},
            {
                "template": templates_a["email"],
                "delay_hours": 9,
                "condition": "previous_not_opened",
            },
        ],
    )
    assert chain.holdout_percent == 20
    assert list(chain.steps.order_by("position").values_list("delay_hours", flat=True)) == [1, 5, 9]
    # Step 1 has messages: it is never deleted, even when the list leaves it out.
    error = refused(chain_update, chain=chain, steps=[])
    assert error.code == "steps_have_messages"
    assert ChainStep.objects.filter(chain=chain).count() == 3


# --------------------------------------------------------------------------------------------
# Presets


@pytest.mark.parametrize("tier", ["foundation", "advanced", "enterprise"])
def test_every_preset_makes_a_working_chain_on_every_tier(tier):
    client = client_create(name=f"Клиент {tier}", tier_code=tier)
    made = {code: chain_from_preset(client, code) for code in PRESETS}
    omnichannel = tier != "foundation"
    for code, chain in made.items():
        steps = list(chain.steps.order_by("position").select_related("template"))
        assert steps
        assert [s.position for s in steps] == list(range(1, len(steps) + 1))
        assert all(s.channel == s.template.channel for s in steps)
        channels = {s.channel for s in steps}
        if not omnichannel:
            assert channels == {"email"}, code
        assert chain.preset == code
        assert chain.status == "draft"
    assert {s.channel for s in made["cascade"].steps.all()} == (
        {"email", "sms", "push"} if omnichannel else {"email"}
    )
    assert made["cascade"].steps.get(position=2).condition == "previous_not_opened"
    assert made["welcome"].steps.filter(channel="email").count() == 3
    assert made["welcome"].trigger == "registration"
    assert made["no_purchase_30"].trigger_days == 30
    winback = made["churn_winback"]
    assert winback.steps.count() == 3
    if omnichannel:
        assert winback.trigger == "churn_probability"
        assert winback.trigger_churn_probability == 0.6
        assert winback.trigger_days == 60
    else:  # no predictive scores on Foundation: 60 days without a purchase
        assert (winback.trigger, winback.trigger_days) == ("days_since_purchase", 60)
    # Three of them can run on Foundation; the fourth is the tier's refusal.
    for code in ("welcome", "no_purchase_30", "churn_winback"):
        chain_activate(chain=made[code])
    if tier == "foundation":
        with pytest.raises(TierLimitError):
            chain_activate(chain=made["cascade"])
    else:
        chain_activate(chain=made["cascade"])


def test_a_preset_twice_gets_unique_names(client_b):
    first = chain_from_preset(client_b, "welcome", activate=True)
    second = chain_from_preset(client_b, "welcome")
    assert first.status == "active"
    assert (first.name, second.name) == ("Приветственная серия", "Приветственная серия (2)")
    names = set(MessageTemplate.objects.for_client(client_b).values_list("name", flat=True))
    assert {"Приветствие: письмо 1", "Приветствие: письмо 1 (2)"} <= names
    assert refused(chain_from_preset, client=client_b, preset_code="nope").code == "unknown_preset"


# --------------------------------------------------------------------------------------------
# Channel settings and push devices


def test_channel_settings_encrypt_credentials_and_name_the_recipient(client_a):
    error = refused(
        channel_settings_save,
        client=client_a,
        channel="sms",
        provider="unisender",
        credentials={"api_key": "k"},
    )
    assert (error.code, error.field) == ("invalid_provider", "provider")
    error = refused(
        channel_settings_save,
        client=client_a,
        channel="sms",
        provider="smsc",
        credentials={"login": "l"},
    )
    assert (error.code, error.field) == ("invalid_credentials", "credentials")
    assert "login + password или apikey" in error.message
    error = refused(
        channel_settings_save,
        client=client_a,
        channel="sms",
        provider="smsru",
        credentials={"api_id": "x", "base_url": "http://169.254.169.254/"},
    )
    assert "base_url" in error.message

    saved = channel_settings_save(
        client=client_a,
        channel="sms",
        provider="smsru",
        sender_name="SHOP",
        credentials={"api_id": "secret-id"},
    )
    assert "secret-id" not in saved.credentials_encrypted
    assert secret_decrypt(saved.credentials_encrypted) == {"api_id": "secret-id"}
    recipient = DataRecipient.objects.for_client(client_a).get(pk=saved.recipient_id)
    assert (recipient.kind, recipient.country) == ("sms", "RU")
    # Switching provider needs its credentials; the recipient follows.
    saved = channel_settings_save(
        client=client_a, channel="sms", provider="smsc", credentials={"apikey": "k2"}
    )
    assert ChannelSettings.objects.for_client(client_a).count() == 1
    assert secret_decrypt(saved.credentials_encrypted) == {"apikey": "k2"}
    # An update without credentials keeps them.
    kept = channel_settings_save(client=client_a, channel="sms", provider="smsc", sender_name="NEW")
    assert secret_decrypt(kept.credentials_encrypted) == {"apikey": "k2"}
    webpush = channel_settings_save(
        client=client_a,
        channel="push",
        provider="webpush",
        credentials={
            "vapid_private_key": "p",
            "vapid_public_key": "q",
            "vapid_subject": "mailto:a@b.ru",
        },
    )
    assert DataRecipient.objects.for_client(client_a).get(pk=webpush.recipient_id).country == ""
    audit = AuditLogEntry.objects.filter(action__startswith="channel_settings").values_list(
        "details", flat=True
    )
    assert audit
    assert all("secret-id" not in str(d) and "k2" not in str(d) for d in audit)


def test_push_devices(client_a, customers_a):
    customer = customers_a[0]
    device, created = push_device_register(
        client=client_a, customer=customer, provider="rustore", token="tok-1"
    )
    again, created_again = push_device_register(
        client=client_a, customer=customers_a[1], provider="rustore", token="tok-1"
    )
    assert created
    assert not created_again
    assert again.pk == device.pk
    assert again.customer_id == customers_a[1].pk
    error = refused(
        push_device_register,
        client=client_a,
        customer=customer,
        provider="webpush",
        token={"endpoint": "https://127.0.0.1/x", "keys": {"p256dh": "a", "auth": "b"}},
    )
    assert error.code == "invalid_subscription"
    web, _ = push_device_register(
        client=client_a,
        customer=customer,
        provider="webpush",
        token={
            "endpoint": "https://fcm.googleapis.com/fcm/send/x",
            "keys": {"p256dh": "a", "auth": "b"},
        },
    )
    assert web.token.startswith('{"endpoint"')


def test_templates_of_another_client_stay_apart(client_a, client_b):
    make_templates(client_a)
    make_templates(client_b)  # the same names in another client are fine
    assert MessageTemplate.objects.for_client(client_b).count() == 3


def test_excluded_audiences_of_the_same_client(client_a, client_b, templates_a):
    from audiences.services import audience_create, destination_create

    def audience(client, name):
        destination = destination_create(
            client=client, name=f"Я {name}", platform="yandex_audiences", credentials={"token": "t"}
        )
        segment = segment_create(
            client=client, name=f"С {name}", kind="rfm", definition={"names": ["Champions"]}
        )
        return audience_create(client=client, name=name, segment=segment, destination=destination)

    own, other = audience(client_a, "Свои"), audience(client_b, "Чужие")
    error = refused(
        chain_create,
        client=client_a,
        data={"name": "Ц", "trigger": "registration", "excluded_audiences": [other]},
    )
    assert error.field == "excluded_audiences"
    chain = chain_create(
        client=client_a,
        data={"name": "Ц", "trigger": "registration", "excluded_audiences": [own]},
    )
    through = TriggerChain.excluded_audiences.through.objects
    assert list(through.filter(triggerchain_id=chain.pk).values_list("audience_id", flat=True)) == [
        own.pk
    ]
    chain_update(chain=chain, data={"excluded_audiences": []})
    assert not through.filter(triggerchain_id=chain.pk).exists()
