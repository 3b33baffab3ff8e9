"""Audience rules outside the platforms: schedules kept in step, credentials encrypted and
rotated, hashing, destination rules and bid-modifier recommendations (hand-computed)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from agency.crypto import CredentialsUnreadable, secret_decrypt
from agency.exports import csv_bytes
from audiences.bidding import CSV_COLUMNS, bid_modifiers_rows, bidmodifiers_add_body, recommend
from audiences.hashing import EMAIL, HASHINGS, PHONE, hashed_sql, hasher_for, platform_value_sql
from audiences.models import Destination
from audiences.services import (
    AudienceError,
    audience_update,
    credentials_rotate,
    destination_create,
    destination_update,
)

from .conftest import build_world, make_audience

pytestmark = pytest.mark.django_db


def test_platform_values_and_hashes():
    assert hasher_for("sha256")("79995551111") == hashlib.sha256(b"79995551111").hexdigest()
    assert hasher_for("md5")("a@b.ru") == hashlib.md5(b"a@b.ru").hexdigest()  # noqa: S324
    assert hasher_for("plain")("a@b.ru") == "a@b.ru"


@pytest.mark.parametrize("hashing", HASHINGS)
def test_sql_platform_values_and_hashes_match_python(hashing):
    """The database builds snapshots: its formatting and hashing must give, byte for byte, what
    the Python hasher (padding lines, the platforms' documented examples) gives."""
    stored = [
        (EMAIL, "anna@example.ru", "anna@example.ru"),
        (EMAIL, " Anna@Example.RU ", "anna@example.ru"),
        (EMAIL, "иван@почта.рф", "иван@почта.рф"),  # Cyrillic: hashed as UTF-8 bytes
        (PHONE, "+79995551111", "79995551111"),
        (PHONE, "+380441234567", "380441234567"),
        (EMAIL, None, ""),
        (PHONE, "", ""),
    ]
    for kind, value, expected in stored:
        formatted = platform_value_sql(kind, "%s")
        with connection.cursor() as cursor:
            hashed = hashed_sql(hashing, formatted, connection.vendor)
            cursor.execute(f"SELECT {formatted}, {hashed}", [value, value])
            platform, uploaded = cursor.fetchone()
        assert platform == expected, (kind, value)
        if expected:
            assert uploaded == hasher_for(hashing)(expected), (hashing, value)


def test_destination_rules_and_encrypted_credentials(client_a):
    with pytest.raises(AudienceError) as refused:
        destination_create(
            client=client_a, name="Я", platform="yandex_audiences",
            credentials={"token": "t"}, hashing="md5",
        )  # fmt: skip
    assert refused.value.code == "invalid_hashing"
    with pytest.raises(AudienceError) as missing:
        destination_create(
            client=client_a, name="VK", platform="vk_ads", credentials={"client_id": "x"}
        )
    assert "client_secret" in missing.value.message
    assert not Destination.objects.for_client(client_a).exists()

    destination = destination_create(
        client=client_a, name="Я", platform="yandex_audiences", credentials={"token": "s3cr3t-tok"}
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credentials_encrypted FROM audiences_destination WHERE id = %s",
            [destination.pk],
        )
        stored = cursor.fetchone()[0]
    assert "s3cr3t" not in stored
    assert secret_decrypt(stored) == {"token": "s3cr3t-tok"}
    assert (destination.country, destination.recipient.country) == ("RU", "RU")
    # The recipient's country is the platform operator's: no caller declares it.
    with pytest.raises(AudienceError) as refused:
        destination_update(destination=destination, country="KZ")
    assert (refused.value.code, refused.value.field) == ("invalid_field", "country")
    destination.recipient.refresh_from_db()
    assert destination.recipient.country == "RU"


def test_key_rotation(client_a, settings):
    destination = destination_create(
        client=client_a, name="Я", platform="yandex_audiences", credentials={"token": "tok"}
    )
    new_key = Fernet.generate_key().decode()
    old_keys = list(settings.CREDENTIALS_KEYS)
    settings.CREDENTIALS_KEYS = [new_key, *old_keys]
    assert credentials_rotate() == 1
    settings.CREDENTIALS_KEYS = [new_key]
    destination.refresh_from_db()
    assert secret_decrypt(destination.credentials_encrypted) == {"token": "tok"}
    settings.CREDENTIALS_KEYS = old_keys
    with pytest.raises(CredentialsUnreadable):
        secret_decrypt(destination.credentials_encrypted)


def test_schedule_follows_the_audience(client_a, yandex_stub):
    from .conftest import yandex_destination

    world = build_world(client_a, 5)
    audience = make_audience(world, yandex_destination(client_a))
    task = audience.periodic_task
    assert task.task == "audiences.tasks.audience_scheduled_sync_task"
    assert json.loads(task.args) == [audience.pk]
    assert (task.interval.every, task.interval.period, task.enabled) == (7, "days", True)

    audience_update(audience=audience, sync_every_days=14, is_active=False)
    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (14, False)
    with pytest.raises(AudienceError) as bad:
        audience_update(audience=audience, sync_every_days=0)
    assert bad.value.code == "invalid_schedule"
    # A new segment starts the remote audience afresh.
    audience.remote = {"segment_id": 5, "snapshot_id": 1}
    audience.save(update_fields=["remote"])
    audience_update(audience=audience, segment=world.suppression)
    assert audience.remote == {}


def item(id_, mean, purpose="retargeting", condition=None):
    return {
        "id": id_, "name": f"A{id_}", "segment": f"S{id_}", "purpose": purpose, "members": 10,
        "mean_clv": mean, "retargeting_condition_id": condition, "remote_segment_id": None,
    }  # fmt: skip


def test_bid_modifiers_hand_computed():
    client_clv = [float(v) for v in range(1, 101)]  # 1..100 ₽
    result = recommend(
        [
            item(1, 90.0, condition=11),  # 89 of 100 below: top 20 % -> 200
            item(2, 50.0, condition=12),  # 49 below: 130 + (49-20)/60*70 = 163.8 -> 164
            item(3, 5.0),  # 4 below: bottom -> 50
            item(4, 60.0, purpose="exclusion", condition=14),  # exclusion -> 0
            item(5, None),  # no scores: no recommendation
        ],
        client_clv,
    )
    assert [r.bid_modifier for r in result] == [200, 164, 50, 0, None]
    assert result[1].clv_percentile == 49.0
    assert result[0].mean_clv == Decimal("90.00")
    assert recommend([item(3, 5.0)], client_clv, exclude_bottom=True)[0].bid_modifier == 0
    body = bidmodifiers_add_body(result, campaign_id=777)
    assert body == {
        "method": "add",
        "params": {
            "BidModifiers": [
                {
                    "CampaignId": 777,
                    "RetargetingAdjustments": [
                        {"RetargetingConditionId": 11, "BidModifier": 200},
                        {"RetargetingConditionId": 12, "BidModifier": 164},
                        {"RetargetingConditionId": 14, "BidModifier": 0},
                    ],
                }
            ]
        },
    }
    rows = bid_modifiers_rows(result)
    assert CSV_COLUMNS[:5] == ["audience_id", "audience", "segment", "members", "mean_clv"]
    assert rows[0][:8] == [1, "A1", "S1", 10, Decimal("90.00"), 89.0, 200, 11]
    # Written by agency.exports: numbers bare, text quoted.
    lines = csv_bytes(rows, header=CSV_COLUMNS).decode("utf-8-sig").splitlines()
    assert lines[0].startswith('"audience_id","audience","segment","members","mean_clv"')
    assert lines[1].startswith('1,"A1","S1",10,90.00,89.0,200,11')
