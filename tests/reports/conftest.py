"""Fixtures of the reports tests: a client with valued Yandex audiences and a Direct account
on the Direct stub."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from agency.crypto import secret_encrypt
from audiences.models import Audience
from audiences.services import audience_create, destination_create
from clients.models import Customer
from reports.models import AdAccount
from segments.models import CustomerScore, Segment, SegmentMembership


def direct_account(client, stub, *, token=None, login=None) -> AdAccount:
    return AdAccount.objects.create(
        client=client,
        provider=AdAccount.Provider.DIRECT,
        name="Директ",
        login=login or stub.login,
        credentials_encrypted=secret_encrypt({"token": token or stub.credentials["token"]}),
    )


def valued_audiences(client, audiences: list[tuple[str, list[int], int | None, int | None]]):
    """Ten scored customers (CLV 100..1000) and Yandex audiences ``(name, members, remote
    segment id, stored retargeting list id)``."""
    now = timezone.now()
    customers = {}
    for i in range(1, 11):
        customers[i] = Customer.objects.create(client=client, external_id=f"k{i}", first_seen=now)
        CustomerScore.objects.create(
            customer=customers[i], client=client, predicted_clv=Decimal(100 * i), computed_at=now
        )
    yandex = destination_create(
        client=client,
        name="Яндекс",
        platform="yandex_audiences",
        credentials={"token": "test-yandex-token"},
    )
    made = {}
    for name, members, segment_id, list_id in audiences:
        segment = Segment.objects.create(
            client=client, name=f"s-{name}", kind="rule", definition={}, size=len(members)
        )
        for i in members:
            SegmentMembership.objects.create(
                client=client, segment=segment, customer=customers[i], entered_at=now
            )
        audience = audience_create(
            client=client,
            name=name,
            segment=segment,
            destination=yandex,
            purpose="retargeting",
            direct_retargeting_condition_id=list_id,
        )
        if segment_id is not None:
            Audience.objects.for_client(client).filter(pk=audience.pk).update(
                remote={"segment_id": segment_id}
            )
        made[name] = audience
    return made


@pytest.fixture
def direct_world(client_b, direct_stub):
    """Campaigns 1 and 2 in Direct; audiences of client_b:

    - "Топ" (CLV 900/1000 -> 200), segment 501, a list on it already in Direct (found by rule);
      campaign 1 already has 200 on it (unchanged), campaign 2 nothing (add);
    - "Середина" (500/600 -> 165), segment 502, no list yet (created on apply), adds on both;
    - "Дно" (100/200 -> 50), segment 503, its stored list id; campaign 1 has 80 (set 80 -> 50);
    - "Не загружена" (700/800), never synced (no remote segment): skipped.
    """
    stub = direct_stub
    stub.add_campaigns(1, 2)
    stub.add_segments(501, 502, 503)
    list_top = stub.seed_list(501, "ручной список")
    list_bottom = stub.seed_list(503)
    stub.seed_list(999)  # someone else's segment: never used
    audiences = valued_audiences(
        client_b,
        [
            ("Топ", [9, 10], 501, None),
            ("Середина", [5, 6], 502, None),
            ("Дно", [1, 2], 503, list_bottom),
            ("Не загружена", [7, 8], None, None),
        ],
    )
    stub.seed_modifier(1, list_top, 200)
    stub.seed_modifier(1, list_bottom, 80)
    account = direct_account(client_b, stub)
    return {
        "client": client_b,
        "stub": stub,
        "account": account,
        "audiences": audiences,
        "list_top": list_top,
        "list_bottom": list_bottom,
    }
