"""consent.purposes is the one list of purpose codes; the seeded rows must agree with it."""

from __future__ import annotations

import pytest

from consent import purposes
from consent.models import ConsentPurpose
from consent.services import ConsentError
from consent.unsubscribe import purpose_code_for_channel


def test_the_seeded_purposes_are_the_constants(db):
    assert set(ConsentPurpose.objects.values_list("code", flat=True)) == set(purposes.PURPOSES)


def test_the_seeded_channels_are_the_channel_map(db):
    seeded = dict(ConsentPurpose.objects.exclude(channel="").values_list("channel", "code"))
    assert seeded == purposes.CHANNEL_PURPOSE
    assert ConsentPurpose.objects.get(code=purposes.AUDIENCE_PURPOSE).channel == ""


def test_a_message_channel_needs_its_purpose():
    for channel, code in purposes.CHANNEL_PURPOSE.items():
        assert purpose_code_for_channel(channel) == code
    assert purpose_code_for_channel("messenger") == "messenger_marketing"
    with pytest.raises(ConsentError) as info:
        purpose_code_for_channel("fax")
    assert info.value.code == "unknown_channel"


def test_a_withdrawal_request_spares_only_analytics_cookies():
    assert set(purposes.PURPOSES) - set(purposes.WITHDRAWAL_PURPOSES) == {
        purposes.ANALYTICS_COOKIES
    }
