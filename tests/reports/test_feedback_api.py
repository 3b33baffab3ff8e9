"""The bid modifier API: plan, apply (and dry run), change sets, rollback; bad input, other
clients, lower tiers."""

from __future__ import annotations

from reports.models import BidModifierChange

from .conftest import direct_account


def test_plan_endpoint(api_b, direct_world):
    response = api_b.post("/api/v1/bid-modifiers/plan/", {"campaign_ids": [1, 2]}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["counts"] == {"add": 4, "set": 1, "unchanged": 1}
    bottom = next(i for i in body["items"] if i["campaign_id"] == 1 and i["audience"] == "Дно")
    assert (bottom["action"], bottom["old_value"], bottom["new_value"]) == ("set", 80, 50)


def test_bad_input_is_400_json(api_b, direct_world):
    for payload, field in [
        ({}, "campaign_ids"),
        ({"campaign_ids": "1"}, "campaign_ids"),
        ({"campaign_ids": [0]}, "campaign_ids"),
        ({"campaign_ids": []}, "campaign_ids"),
        ({"campaign_ids": [1], "exclude_bottom": "maybe"}, "exclude_bottom"),
    ]:
        response = api_b.post("/api/v1/bid-modifiers/plan/", payload, format="json")
        assert response.status_code == 400, payload
        assert response.json()["field"] == field
    response = api_b.post(
        "/api/v1/bid-modifiers/apply/", {"campaign_ids": [1], "dry_run": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "dry_run"
    assert direct_world["stub"].requests == []


def test_apply_dry_run_list_and_rollback(api_b, direct_world):
    stub = direct_world["stub"]
    before = stub.modifiers_state()
    dry = api_b.post(
        "/api/v1/bid-modifiers/apply/", {"campaign_ids": [1, 2], "dry_run": True}, format="json"
    )
    assert dry.status_code == 200
    assert dry.json()["change"] is None
    assert dry.json()["plan"]["counts"]["add"] == 4
    assert stub.modifiers_state() == before
    applied = api_b.post("/api/v1/bid-modifiers/apply/", {"campaign_ids": [1, 2]}, format="json")
    assert applied.status_code == 200, applied.json()
    change = applied.json()["change"]
    assert change["status"] == "applied"
    assert len(change["items"]) == 5
    assert stub.modifiers_state() != before
    listed = api_b.get("/api/v1/bid-modifier-changes/").json()
    assert [c["id"] for c in listed["results"]] == [change["id"]]
    rolled = api_b.post(f"/api/v1/bid-modifier-changes/{change['id']}/rollback/")
    assert rolled.status_code == 200, rolled.json()
    assert rolled.json()["status"] == "rolled_back"
    assert {i["rollback_status"] for i in rolled.json()["items"]} == {"rolled_back"}
    assert stub.modifiers_state() == before
    again = api_b.post(f"/api/v1/bid-modifier-changes/{change['id']}/rollback/")
    assert again.status_code == 409
    assert again.json()["code"] == "already_rolled_back"


def test_other_client_gets_404_and_lower_tier_403(api_a, api_b, client_a, direct_world):
    applied = api_b.post("/api/v1/bid-modifiers/apply/", {"campaign_ids": [1]}, format="json")
    change_id = applied.json()["change"]["id"]
    assert api_a.get(f"/api/v1/bid-modifier-changes/{change_id}/").status_code == 404
    response = api_a.post(f"/api/v1/bid-modifier-changes/{change_id}/rollback/")
    assert response.status_code == 404
    assert BidModifierChange.objects.for_client(direct_world["client"]).get().status == "applied"
    assert api_a.get("/api/v1/bid-modifier-changes/").json()["results"] == []
    direct_account(client_a, direct_world["stub"])
    refused = api_a.post("/api/v1/bid-modifiers/plan/", {"campaign_ids": [1]}, format="json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "tier_feature_value_bidding"


def test_no_direct_account_is_a_clear_error(api_b, client_b, direct_stub):
    response = api_b.post("/api/v1/bid-modifiers/plan/", {"campaign_ids": [1]}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "direct_account_missing"


def test_direct_refusal_is_502_json(api_b, direct_world):
    direct_world["account"].login = "not-mine"
    direct_world["account"].save()
    response = api_b.post("/api/v1/bid-modifiers/plan/", {"campaign_ids": [1]}, format="json")
    assert response.status_code == 502
    assert response.json()["code"] == "direct_error"
    direct_world["account"].login = direct_world["stub"].login
    direct_world["account"].save()
    direct_world["stub"].set_units(3)
    response = api_b.post("/api/v1/bid-modifiers/plan/", {"campaign_ids": [1]}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "direct_units_exhausted"
    assert response["Retry-After"] == "3600"
