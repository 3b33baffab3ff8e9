"""Yandex Direct bid modifiers applied from the CLV recommendations, against the Direct stub:
the plan's diff, the dry run, apply with per-item results, points respected, rollback."""

from __future__ import annotations

import pytest

from agency.models import AuditLogEntry
from clients.tiers import TierLimitError
from integrations.yandex_direct import YandexDirectClient, units_cost
from reports.bidding import bid_modifier_apply, bid_modifier_change_rollback, bid_modifier_plan
from reports.models import BidModifierChange, BidModifierChangeItem

from .conftest import direct_account


def _items(change):
    return BidModifierChangeItem.objects.for_client(change.client_id).filter(change=change)


def _diff(plan):
    return sorted(
        (i.campaign_id, i.audience, i.action, i.old_value, i.new_value) for i in plan.items
    )


EXPECTED_DIFF = [
    (1, "Дно", "set", 80, 50),
    (1, "Середина", "add", None, 165),
    (1, "Топ", "unchanged", 200, 200),
    (2, "Дно", "add", None, 50),
    (2, "Середина", "add", None, 165),
    (2, "Топ", "add", None, 200),
]


def test_plan_diff(direct_world):
    plan = bid_modifier_plan(client=direct_world["client"], campaign_ids=[2, 1])
    assert _diff(plan) == EXPECTED_DIFF
    assert plan.counts() == {"add": 4, "set": 1, "unchanged": 1}
    lists = {i.audience: i.retargeting_list_id for i in plan.items}
    assert lists == {"Топ": direct_world["list_top"], "Дно": direct_world["list_bottom"],
                     "Середина": None}  # fmt: skip
    assert [e["remote_segment_id"] for e in plan.lists_to_create] == [502]
    assert [s["audience"] for s in plan.skipped] == ["Не загружена"]
    assert plan.units_remaining == 64_000 - 30


def test_dry_run_writes_nothing(direct_world):
    stub = direct_world["stub"]
    before, lists_before = stub.modifiers_state(), dict(stub.advertiser().lists)
    plan, change = bid_modifier_apply(
        client=direct_world["client"], campaign_ids=[1, 2], dry_run=True
    )
    assert change is None
    assert _diff(plan) == EXPECTED_DIFF
    assert stub.modifiers_state() == before
    assert stub.advertiser().lists == lists_before
    assert not BidModifierChange.objects.for_client(direct_world["client"]).exists()
    assert stub.calls("bidmodifiers") == 1  # the get only


def test_apply_then_rollback_restores_the_state_exactly(direct_world, agency_admin):
    stub, client = direct_world["stub"], direct_world["client"]
    before = stub.modifiers_state()
    plan, change = bid_modifier_apply(
        client=client, campaign_ids=[1, 2], actor=agency_admin, source="admin"
    )
    assert change.status == BidModifierChange.Status.APPLIED
    items = list(_items(change).order_by("campaign_id", "audience_name"))
    assert [(i.campaign_id, i.audience_name, i.previous_value, i.new_value, i.status)
            for i in items] == [
        (1, "Дно", 80, 50, "applied"),
        (1, "Середина", None, 165, "applied"),
        (2, "Дно", None, 50, "applied"),
        (2, "Середина", None, 165, "applied"),
        (2, "Топ", None, 200, "applied"),
    ]  # fmt: skip
    # The new list was created in Direct and its id stored on the audience.
    middle = direct_world["audiences"]["Середина"]
    middle.refresh_from_db()
    created = middle.direct_retargeting_condition_id
    assert stub.advertiser().lists[created]["Rules"][0]["Arguments"] == [{"ExternalId": 502}]
    top = direct_world["audiences"]["Топ"]
    top.refresh_from_db()
    assert top.direct_retargeting_condition_id == direct_world["list_top"]
    after = {(c, lid): v for c, lid, v in stub.modifiers_state().values()}
    assert after == {
        (1, direct_world["list_top"]): 200,
        (1, direct_world["list_bottom"]): 50,
        (1, created): 165,
        (2, direct_world["list_top"]): 200,
        (2, direct_world["list_bottom"]): 50,
        (2, created): 165,
    }
    assert all(i.modifier_id in stub.modifiers_state() for i in items)
    assert AuditLogEntry.objects.filter(
        action="bid_modifiers_applied", object_id=str(change.pk)
    ).exists()
    # A second apply finds nothing to change.
    again, none = bid_modifier_apply(client=client, campaign_ids=[1, 2])
    assert none is None
    assert again.counts() == {"add": 0, "set": 0, "unchanged": 6}

    bid_modifier_change_rollback(change=change, actor=agency_admin, source="admin")
    change.refresh_from_db()
    assert change.status == BidModifierChange.Status.ROLLED_BACK
    assert change.rolled_back_at is not None
    assert stub.modifiers_state() == before
    assert set(_items(change).values_list("rollback_status", flat=True)) == {"rolled_back"}
    assert AuditLogEntry.objects.filter(action="bid_modifiers_rolled_back").count() == 1
    with pytest.raises(Exception, match="уже откачено"):
        bid_modifier_change_rollback(change=change)


def test_lower_tier_is_refused_before_any_call(client_a, direct_stub):
    direct_account(client_a, direct_stub)
    with pytest.raises(TierLimitError) as exc:
        bid_modifier_apply(client=client_a, campaign_ids=[1])
    assert exc.value.code == "tier_feature_value_bidding"
    with pytest.raises(TierLimitError):
        bid_modifier_plan(client=client_a, campaign_ids=[1])
    assert direct_stub.requests == []
    assert not BidModifierChange.objects.for_client(client_a).exists()


def test_units_running_out_leaves_the_rest_not_applied(direct_world):
    stub, client = direct_world["stub"], direct_world["client"]
    before = stub.modifiers_state()
    # Enough for the plan (2 gets), the new list and the set, not for the 4 additions.
    units = (
        units_cost("retargetinglists", "get")
        + units_cost("bidmodifiers", "get")
        + units_cost("retargetinglists", "add", 1)
        + units_cost("bidmodifiers", "set", 1)
        + units_cost("bidmodifiers", "add", 4)
        - 1
    )
    stub.set_units(units)
    _plan, change = bid_modifier_apply(client=client, campaign_ids=[1, 2])
    assert change.status == BidModifierChange.Status.PARTIAL
    statuses = {(i.campaign_id, i.audience_name): (i.status, i.error) for i in _items(change).all()}
    assert statuses[(1, "Дно")] == ("applied", "")
    not_applied = [v for k, v in statuses.items() if k != (1, "Дно")]
    assert len(not_applied) == 4
    assert all(s == "not_applied" and "не хватает баллов" in e for s, e in not_applied)
    assert "не хватает баллов" in change.message
    assert change.units_remaining == units_cost("bidmodifiers", "add", 4) - 1
    assert stub.calls("bidmodifiers") == 2  # get and set: the add was never sent
    state = stub.modifiers_state()
    assert len(state) == len(before)  # nothing added


def test_error_152_stops_without_looping(direct_world, monkeypatch):
    stub, client = direct_world["stub"], direct_world["client"]
    # Points spent elsewhere between calls: the estimate says yes, Direct answers 152.
    monkeypatch.setattr(YandexDirectClient, "can_afford", lambda *a, **k: True)
    stub.set_units(units_cost("retargetinglists", "get") + units_cost("bidmodifiers", "get") + 17)
    _plan, change = bid_modifier_apply(client=client, campaign_ids=[1, 2])
    items = list(_items(change).all())
    assert change.status == BidModifierChange.Status.FAILED
    assert {i.status for i in items} == {"not_applied"}
    assert all("152" in i.error for i in items)
    assert stub.calls("bidmodifiers") == 2  # the get and one refused set: no loop
    assert BidModifierChangeItem.objects.for_client(client).count() == 5


def test_units_out_before_the_lists_leave_everything_not_applied(direct_world):
    stub, client = direct_world["stub"], direct_world["client"]
    before, lists_before = stub.modifiers_state(), set(stub.advertiser().lists)
    stub.set_units(units_cost("retargetinglists", "get") + units_cost("bidmodifiers", "get") + 1)
    _plan, change = bid_modifier_apply(client=client, campaign_ids=[1, 2])
    assert change.status == BidModifierChange.Status.FAILED
    assert set(_items(change).values_list("status", flat=True)) == {"not_applied"}
    assert "не хватает баллов" in change.message
    assert stub.modifiers_state() == before
    assert set(stub.advertiser().lists) == lists_before
