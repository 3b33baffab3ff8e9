"""The engine end to end on PostgreSQL: enrolment and arms, consent at queueing and sending,
caps, quiet hours, cascades, exits, withdrawal, erasure, and a crash between send and commit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns import arms
from campaigns.dispatch import outbox_recover, quiet_until
from campaigns.engine import TickReport
from campaigns.models import CampaignSettings, Enrollment, Message, TriggerChain
from campaigns.services import chains_tick
from clients.models import Order
from consent.requests import customer_erase
from segments.models import SegmentMembership
from segments.segmentation import segment_create

from .conftest import WITHDRAWN, chain, consent, make_customers, register, sms_settings

pytestmark = pytest.mark.django_db

# Noon in Moscow: outside the default quiet hours (21:00-09:00).
NOW = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)


def messages(client, **filters):
    return Message.objects.for_client(client).filter(**filters)


def test_registration_enrols_once_with_a_stable_arm_and_the_holdout_gets_nothing(
    client_a, recording
):
    people = make_customers(client_a, 400)
    consent(client_a, people)
    flow = chain(client_a, holdout_percent=20)
    register(client_a, people, NOW - dt.timedelta(hours=1))

    report = chains_tick(client_a.pk, now=NOW)
    enrolled = report.enrolled[flow.pk]
    assert enrolled["treatment"] + enrolled["holdout"] == 400
    arms_now = dict(Enrollment.objects.for_client(client_a).values_list("customer_id", "arm"))
    # The arm is the stable hash, the same function of (client, chain, customer) every time.
    assert all(arm == arms.arm_of(client_a.pk, flow.pk, cid, 20) for cid, arm in arms_now.items())
    holdout = {cid for cid, arm in arms_now.items() if arm == "holdout"}
    assert 40 <= len(holdout) <= 120
    sent_to = {int(m.key) for m in recording["email"].sent}
    sent_customers = set(messages(client_a, pk__in=sent_to).values_list("customer_id", flat=True))
    assert sent_customers.isdisjoint(holdout)
    assert len(sent_customers) == 400 - len(holdout)
    # Both arms are recorded the same way: one message row each, the holdout's never sent.
    assert messages(client_a, state="holdout").count() == len(holdout)
    assert messages(client_a, state="sent").count() == 400 - len(holdout)

    # A second tick enrols nobody again and never changes an arm.
    again = chains_tick(client_a.pk, now=NOW + dt.timedelta(minutes=5))
    assert again.enrolled[flow.pk] == {"treatment": 0, "holdout": 0}
    assert dict(Enrollment.objects.for_client(client_a).values_list("customer_id", "arm")) == (
        arms_now
    )
    assert len(recording["email"].sent) == 400 - len(holdout)
    assert recording["email"].violations == []
    flow.refresh_from_db()
    # The chain keeps the sample-ratio test of its realised split (not a random draw's luck).
    assert flow.srm_p_value == pytest.approx(
        arms.sample_ratio_p_value(len(holdout), 400 - len(holdout), 20)
    )


def test_sample_ratio_mismatch_is_flagged():
    assert arms.sample_ratio_p_value(330, 670, 20) < arms.SRM_ALERT_P  # PostHog #84351
    assert arms.sample_ratio_p_value(200, 800, 20) > 0.5
    assert arms.sample_ratio_p_value(5, 20, 20) is None  # too few to say


def test_no_consent_is_suppressed_with_the_reason_and_a_withdrawal_before_sending_wins(
    client_a, recording
):
    people = make_customers(client_a, 30)
    consent(client_a, people[:20])
    flow = chain(client_a, holdout_percent=0)
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW, dispatch=False)
    assert messages(client_a, state="suppressed").count() == 10
    assert "email_marketing" in messages(client_a, state="suppressed").first().reason
    assert messages(client_a, state="queued").count() == 20
    # Withdrawal cancels that person's queued messages at once (the consent hook)...
    consent(client_a, people[:5], action=WITHDRAWN)
    assert messages(client_a, state="cancelled").count() == 5
    # ...and a withdrawal that slips in after queueing is caught again at sending.
    Message.objects.for_client(client_a).filter(customer=people[5]).update(state="queued")
    consent(client_a, [people[6]], action=WITHDRAWN)
    Message.objects.for_client(client_a).filter(customer=people[6]).update(state="queued")
    chains_tick(client_a.pk, now=NOW)
    assert recording["email"].violations == []
    assert messages(client_a, customer=people[6]).get().state == "suppressed"
    assert {m.to for m in recording["email"].sent} == {c.email for c in people[5:20]} - {
        people[6].email
    }
    assert Enrollment.objects.for_client(client_a).filter(chain=flow).count() == 30


def test_caps_count_across_chains_and_transactional_is_never_counted(client_a, recording):
    people = make_customers(client_a, 3)
    consent(client_a, people)
    CampaignSettings.objects.create(client=client_a, email_per_day=1, max_per_day=5)
    chain(client_a, name="A", holdout_percent=0)
    chain(client_a, name="B", holdout_percent=0)
    chain(client_a, name="Чек", holdout_percent=0, kind=TriggerChain.Kind.TRANSACTIONAL)
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    per_person = {}
    for message in messages(client_a).select_related("chain"):
        per_person.setdefault(message.customer_id, {})[message.chain.name] = message
    for person in people:
        got = per_person[person.pk]
        states = sorted(m.state for name, m in got.items() if name != "Чек")
        assert states == ["deferred", "sent"]  # one marketing email a day, across chains
        assert got["Чек"].state == "sent"  # transactional passes the cap
        deferred = next(m for m in got.values() if m.state == "deferred")
        assert deferred.due_at == NOW + dt.timedelta(days=1)
    # The next day the deferred ones go out.
    chains_tick(client_a.pk, now=NOW + dt.timedelta(days=1, minutes=1))
    assert messages(client_a, state="deferred").count() == 0
    assert len(recording["email"].sent) == 9


def test_quiet_hours_in_a_vladivostok_customers_zone(client_a, recording):
    far, near = make_customers(client_a, 2)
    far.attributes = {"time_zone": "Asia/Vladivostok"}
    far.save(update_fields=["attributes"])
    consent(client_a, [far, near])
    chain(client_a, holdout_percent=0)
    # 12:30 UTC: 15:30 in Moscow, 22:30 in Vladivostok (UTC+10).
    noon = NOW.replace(hour=12, minute=30)
    register(client_a, [far, near], noon - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=noon)
    assert messages(client_a, customer=near).get().state == "sent"
    waiting = messages(client_a, customer=far).get()
    assert waiting.state == "deferred"
    # 09:00 in Vladivostok the next morning is 23:00 UTC today.
    assert waiting.due_at == noon.replace(hour=23, minute=0)
    chains_tick(client_a.pk, now=noon.replace(hour=23, minute=1))
    assert messages(client_a, customer=far).get().state == "sent"


def test_quiet_window_wraps_midnight():
    import zoneinfo

    moscow = zoneinfo.ZoneInfo("Europe/Moscow")
    at = dt.datetime(2026, 12, 5, 23, 30, tzinfo=moscow)
    end = quiet_until(at, moscow, dt.time(21), dt.time(9))
    assert end == dt.datetime(2026, 12, 6, 9, 0, tzinfo=moscow)
    early = dt.datetime(2026, 12, 5, 7, 0, tzinfo=moscow)
    assert quiet_until(early, moscow, dt.time(21), dt.time(9)) == dt.datetime(
        2026, 12, 5, 9, 0, tzinfo=moscow
    )
    assert quiet_until(early.replace(hour=12), moscow, dt.time(21), dt.time(9)) is None


def test_cascade_sms_only_when_the_email_was_not_opened(client_a, recording):
    sms_settings(client_a)
    people = make_customers(client_a, 2)
    consent(client_a, people)
    consent(client_a, people, purpose="sms_marketing")
    flow = chain(
        client_a,
        holdout_percent=0,
        steps=(("email", 0, "always"), ("sms", 24, "previous_not_opened")),
    )
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    opened = messages(client_a, customer=people[0]).get()
    from campaigns.tracking import message_engagement_record

    message_engagement_record(opened, "open")
    chains_tick(client_a.pk, now=NOW + dt.timedelta(hours=25))
    assert [m.to for m in recording["sms"].sent] == [people[1].phone]
    assert messages(client_a, customer=people[0], channel="sms").count() == 0
    assert (
        Enrollment.objects.for_client(client_a).filter(chain=flow).get(customer=people[0]).state
        == "active"
    )  # until the window ends


def test_a_purchase_converts_and_cancels_the_rest(client_a, recording):
    people = make_customers(client_a, 2)
    consent(client_a, people)
    flow = chain(
        client_a, holdout_percent=0, steps=(("email", 0, "always"), ("email", 48, "always"))
    )
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    Order.objects.create(
        client=client_a,
        customer=people[0],
        external_id="o1",
        placed_at=NOW + dt.timedelta(hours=3),
        amount=Decimal("1990.00"),
    )
    report = chains_tick(client_a.pk, now=NOW + dt.timedelta(hours=49))
    assert report.converted == 1
    won = Enrollment.objects.for_client(client_a).filter(chain=flow).get(customer=people[0])
    assert won.state == "converted"
    assert won.conversion_value == Decimal("1990.00")
    assert messages(client_a, customer=people[0]).count() == 1  # step 2 never created
    assert messages(client_a, customer=people[1]).count() == 2


def test_segment_recalculation_leaves_running_enrolments_alone(client_a, recording):
    people = make_customers(client_a, 4, city="Москва")
    consent(client_a, people)
    moscow = segment_create(
        client=client_a,
        name="Москва",
        kind="rule",
        definition={"all": [{"attribute": "city", "op": "eq", "value": "Москва"}]},
    )
    flow = chain(
        client_a,
        holdout_percent=0,
        audience_segment=moscow,
        steps=(("email", 0, "always"), ("email", 48, "always")),
    )
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    assert (
        Enrollment.objects.for_client(client_a).filter(chain=flow).filter(state="active").count()
        == 4
    )
    SegmentMembership.objects.for_client(client_a).update(left_at=NOW)  # everyone left
    chains_tick(client_a.pk, now=NOW + dt.timedelta(hours=49))
    assert (
        Enrollment.objects.for_client(client_a).filter(chain=flow).filter(state="active").count()
        == 4
    )
    assert messages(client_a, state="sent").count() == 8
    # Only a chain that asks for it lets people go when they leave the filter.
    flow.exit_on_segment_leave = True
    flow.save()
    report = chains_tick(client_a.pk, now=NOW + dt.timedelta(hours=50))
    assert report.exited == 4


def test_a_crash_between_acceptance_and_commit_never_sends_twice(client_a, recording):
    people = make_customers(client_a, 5)
    consent(client_a, people)
    chain(client_a, holdout_percent=0)
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW, dispatch=False)
    # A worker claimed and handed the batch to the provider, then died before recording it.
    from campaigns.channels import channel_sender_for
    from campaigns.dispatch import _claim, _outgoing

    sender = channel_sender_for(client_a.pk, "email")
    caps = CampaignSettings.objects.for_client(client_a).get()
    claimed = _claim(client_a.pk, "email", sender, caps, NOW, TickReport())
    sender.client.send_batch([_outgoing(m, sender) for m in claimed])
    assert len(recording["email"].sent) == 5
    # Later ticks do not take "sending" messages; recovery never resends them blindly.
    chains_tick(client_a.pk, now=NOW + dt.timedelta(minutes=1))
    result = outbox_recover(now=timezone.now() + dt.timedelta(minutes=11))
    assert result == {"requeued": 0, "unknown": 5}
    chains_tick(client_a.pk, now=NOW + dt.timedelta(minutes=30))
    assert len(recording["email"].sent) == 5
    assert messages(client_a, state="failed", outcome_unknown=True).count() == 5


def test_erasure_blanks_addresses_and_keeps_counts(client_a, recording):
    people = make_customers(client_a, 2)
    consent(client_a, people)
    chain(client_a, holdout_percent=0, steps=(("email", 0, "always"), ("email", 48, "always")))
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    customer_erase(customer=people[0], source="admin")
    rows = list(messages(client_a, customer=people[0]))
    assert len(rows) == 1
    assert (rows[0].address, rows[0].body) == ("", "")
    assert Enrollment.objects.for_client(client_a).get(customer=people[0]).state == "exited"


def test_a_bounce_stops_the_person_on_that_channel_and_later_steps_are_not_sent(
    client_a, recording
):
    people = make_customers(client_a, 2)
    consent(client_a, people)
    recording["email"].gone_addresses.add(people[0].email)
    chain(client_a, holdout_percent=0, steps=(("email", 0, "always"), ("email", 24, "always")))
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    bounced = messages(client_a, customer=people[0]).get()
    assert bounced.state == "failed"
    assert bounced.reason == "550 5.1.1 user unknown"  # the provider's words
    chains_tick(client_a.pk, now=NOW + dt.timedelta(hours=25))
    second = messages(client_a, customer=people[0], step__position=2).get()
    assert second.state == "suppressed"
    assert "bounce" in second.reason or "недействителен" in second.reason
    assert [m.to for m in recording["email"].sent].count(people[0].email) == 1
    assert [m.to for m in recording["email"].sent].count(people[1].email) == 2


def test_recommendations_of_the_scoring_run_fill_the_message(client_a, recording):
    from segments.models import CustomerRecommendation

    people = make_customers(client_a, 2)
    consent(client_a, people)
    CustomerRecommendation.objects.create(
        client=client_a,
        customer=people[0],
        products=[
            {"id": "sku-1", "name": "Кофемолка", "price": "2490.00"},
            {"id": "sku-2", "name": "Фильтры для кофе", "price": "190.00"},
        ],
        computed_at=NOW,
    )
    flow = chain(client_a, holdout_percent=0)
    step = flow.steps.get()
    step.template.body = (
        "<p>{{ first_name }}, вам подойдёт:</p><ul>{% for item in recommendations %}"
        "<li>{{ item.name }} — {{ item.price }} ₽</li>{% empty %}<li>новинки</li>{% endfor %}</ul>"
    )
    step.template.save()
    register(client_a, people, NOW - dt.timedelta(hours=1))
    chains_tick(client_a.pk, now=NOW)
    bodies = {m.to: m.body for m in recording["email"].sent}
    assert "Кофемолка — 2490" in bodies[people[0].email]
    assert "Фильтры для кофе" in bodies[people[0].email]
    assert "новинки" in bodies[people[1].email]  # no recommendations yet: the fallback text


def test_state_triggers_and_re_entry(client_b, recording):
    from segments.models import CustomerScore

    people = make_customers(client_b, 5)
    consent(client_b, people)

    def order(person, days_ago, ext):
        Order.objects.create(
            client=client_b,
            customer=person,
            external_id=ext,
            placed_at=NOW - dt.timedelta(days=days_ago),
            amount=Decimal("100"),
        )

    order(people[0], 31, "a")  # crossed 30 days yesterday
    order(people[1], 90, "b")  # asleep for long: not "just crossed"
    order(people[2], 5, "c")  # bought recently
    order(people[3], 61, "d")  # crossed 60 days
    for person, probability in ((people[2], 0.8), (people[4], 0.1)):
        CustomerScore.objects.create(
            customer=person,
            client=client_b,
            frequency=1,
            monetary=Decimal("100"),
            churn_probability=probability,
            computed_at=NOW,
        )
    dormant = chain(
        client_b,
        name="30",
        trigger="days_since_purchase",
        trigger_days=30,
        holdout_percent=0,
        reentry="after_days",
        reentry_days=3,
    )
    churn = chain(
        client_b,
        name="отток",
        trigger="churn_probability",
        trigger_churn_probability=0.6,
        trigger_days=60,
        holdout_percent=0,
    )
    report = chains_tick(client_b.pk, now=NOW, dispatch=False)
    enrolled = {
        chain_id: set(
            Enrollment.objects.for_client(client_b)
            .filter(chain_id=chain_id)
            .values_list("customer_id", flat=True)
        )
        for chain_id in report.enrolled
    }
    assert enrolled[dormant.pk] == {people[0].pk}
    assert enrolled[churn.pk] == {people[2].pk, people[3].pk}  # probability, or 60 days
    # Re-entry after 3 days: not before, and only while the trigger holds again.
    Enrollment.objects.for_client(client_b).update(state="completed")
    again = chains_tick(client_b.pk, now=NOW + dt.timedelta(days=1), dispatch=False)
    assert again.enrolled[dormant.pk] == {"treatment": 0, "holdout": 0}
    assert again.enrolled[churn.pk] == {"treatment": 0, "holdout": 0}  # never re-enters
