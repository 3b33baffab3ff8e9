"""Admin of Direct bid modifiers: the plan page (dry run, apply), the change set with its
items, the rollback button and action; roles and client scope."""

from __future__ import annotations

from django.urls import reverse

from reports.bidding import bid_modifier_apply
from reports.models import BidModifierChange

PLAN_URL = "/admin/reports/bidmodifierchange/plan/"


def test_plan_dry_run_then_apply_then_rollback(client, agency_admin, direct_world):
    stub = direct_world["stub"]
    before = stub.modifiers_state()
    client.force_login(agency_admin)
    assert client.get(PLAN_URL).status_code == 200
    form = {"client": direct_world["client"].pk, "campaign_ids": "1, 2", "dry_run": "1"}
    response = client.post(PLAN_URL, form)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="plan-row plan-add"') == 4
    assert html.count('class="plan-row plan-set"') == 1
    assert html.count('class="plan-row plan-unchanged"') == 1
    assert stub.modifiers_state() == before
    assert not BidModifierChange.objects.for_client(direct_world["client"]).exists()

    form.pop("dry_run")
    response = client.post(PLAN_URL, {**form, "apply": "1"})
    change = BidModifierChange.objects.for_client(direct_world["client"]).get()
    change_url = reverse("admin:reports_bidmodifierchange_change", args=[change.pk])
    assert response.status_code == 302
    assert response["Location"] == change_url
    assert change.status == "applied"
    page = client.get(change_url).content.decode()
    assert 'class="bid-rollback"' in page
    assert "Середина" in page
    response = client.post(reverse("admin:reports_bidmodifierchange_rollback", args=[change.pk]))
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.status == "rolled_back"
    assert stub.modifiers_state() == before
    assert 'class="bid-rollback"' not in client.get(change_url).content.decode()


def test_rollback_action(client, agency_admin, direct_world):
    before = direct_world["stub"].modifiers_state()
    _plan, change = bid_modifier_apply(client=direct_world["client"], campaign_ids=[1, 2])
    client.force_login(agency_admin)
    response = client.post(
        "/admin/reports/bidmodifierchange/",
        {"action": "rollback_selected", "_selected_action": [change.pk]},
    )
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.status == "rolled_back"
    assert direct_world["stub"].modifiers_state() == before


def test_bad_campaign_ids_and_roles(client, agency_admin, analyst, account_manager, direct_world):
    client.force_login(agency_admin)
    response = client.post(PLAN_URL, {"client": direct_world["client"].pk, "campaign_ids": "x"})
    assert response.status_code == 200
    assert "положительные целые" in response.content.decode()
    assert direct_world["stub"].requests == []
    client.force_login(analyst)
    assert client.get(PLAN_URL).status_code == 403
    # An account manager of client_a only cannot pick client_b.
    client.force_login(account_manager)
    response = client.post(
        PLAN_URL, {"client": direct_world["client"].pk, "campaign_ids": "1", "apply": "1"}
    )
    assert response.status_code == 200
    assert not BidModifierChange.objects.for_client(direct_world["client"]).exists()
    assert direct_world["stub"].requests == []
