"""Property: whatever the order of grants, withdrawals and ticks, no message is ever sent to a
person without a current consent for the channel's purpose at the moment of sending.

The recording channel client checks consent itself (``consent.selectors.consent_is_granted``,
at send time) for every message it is handed; hypothesis drives random interleavings."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.services import chains_tick
from clients.services import client_create

from .conftest import GRANTED, WITHDRAWN, chain, consent, make_customers, register, sms_settings

pytestmark = pytest.mark.django_db

PEOPLE = 6
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.integers(0, PEOPLE - 1), st.sampled_from(["email", "sms"])),
        st.tuples(
            st.just("withdraw"), st.integers(0, PEOPLE - 1), st.sampled_from(["email", "sms"])
        ),
        st.tuples(st.just("tick"), st.integers(0, 3), st.just("")),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_no_send_without_consent_whatever_the_order(db, recording, actions):
    client = client_create(name=f"Свойство {uuid.uuid4().hex[:8]}", tier_code="advanced")
    for channel_client in recording.values():
        channel_client.sent.clear()
        channel_client.violations.clear()
    people = make_customers(client, PEOPLE)
    sms_settings(client)
    now = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    chain(
        client,
        holdout_percent=0,
        steps=(("email", 0, "always"), ("sms", 1, "always"), ("email", 2, "always")),
    )
    register(client, people, now - dt.timedelta(minutes=30))
    purposes = {"email": "email_marketing", "sms": "sms_marketing"}
    for kind, index, channel in actions:
        if kind == "tick":
            chains_tick(client.pk, now=now + dt.timedelta(hours=index))
        else:
            consent(
                client,
                [people[index]],
                purpose=purposes[channel],
                action=GRANTED if kind == "grant" else WITHDRAWN,
            )
    chains_tick(client.pk, now=now + dt.timedelta(hours=5))
    assert recording["email"].violations == []
    assert recording["sms"].violations == []
    keys = [m.key for c in recording.values() for m in c.sent]
    assert len(keys) == len(set(keys))  # and never twice
