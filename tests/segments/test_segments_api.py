"""Segment and scoring API: CRUD with tier errors as JSON codes, members with cursor pagination,
a customer's scores, starting a scoring run, and another client's key getting 404 everywhere."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver

from clients.models import Customer
from clients.services import api_key_create
from segments import api as segments_api
from segments.models import ScoringRun, Segment, SegmentMembership, SegmentSizeSnapshot
from segments.segmentation import segment_create
from tests.segments.test_rules import build_base

pytestmark = pytest.mark.django_db


def post(api, url, body):
    return api.post(url, data=json.dumps(body), content_type="application/json")


def patch(api, url, body):
    return api.patch(url, data=json.dumps(body), content_type="application/json")


def put(api, url, body):
    return api.put(url, data=json.dumps(body), content_type="application/json")


RFM_BEST = {"name": "Лучшие", "kind": "rfm", "definition": {"names": ["Champions", "New"]}}


@pytest.fixture
def base_b(client_b):
    from django.utils import timezone

    return build_base(client_b, now=timezone.now())


# --------------------------------------------------------------------------------------------
# CRUD


def test_create_list_retrieve_update(api_b, client_b, base_b):
    created = post(api_b, "/api/v1/segments/", RFM_BEST)
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["size"] == 2
    assert body["kind"] == "rfm"
    assert body["description"] == "RFM-сегменты: Чемпионы, Новые"  # names; codes in definition
    assert body["members_url"] == f"/api/v1/segments/{body['id']}/members/"
    assert body["warnings"] == []

    listed = api_b.get("/api/v1/segments/").json()
    assert [(s["name"], s["size"]) for s in listed["results"]] == [("Лучшие", 2)]
    url = f"/api/v1/segments/{body['id']}/"
    assert api_b.get(url).json()["definition"] == {"names": ["Champions", "New"]}

    patched = patch(api_b, url, {"definition": {"names": ["Champions"]}})
    assert patched.status_code == 200
    assert patched.json()["size"] == 1
    assert patched.json()["name"] == "Лучшие"
    rule = {"all": [{"orders": {"count": {"gte": 2}}}]}
    replaced = put(api_b, url, {"name": "Частые", "kind": "rule", "definition": rule})
    assert replaced.status_code == 200
    assert (replaced.json()["name"], replaced.json()["size"]) == ("Частые", 2)
    assert "заказы (оплаченные): количество ≥ 2" in replaced.json()["description"]


def test_every_kind_through_the_api(api_b, client_b, base_b):
    kinds = {
        "rfm": {"names": ["Champions"]},
        "lifecycle": {"stages": ["Win-back"]},
        "predictive": {"clv_top_percent": 10},
        "rule": {"any": [{"score": "churn_probability", "op": "gte", "value": 0.5}]},
        "lookalike_seed": {"top_percent": 100},
        "suppression": {"type": "recent_purchasers", "days": 30},
    }
    sizes = {}
    for kind, definition in kinds.items():
        response = post(
            api_b, "/api/v1/segments/", {"name": kind, "kind": kind, "definition": definition}
        )
        assert response.status_code == 201, (kind, response.json())
        sizes[kind] = response.json()["size"]
    assert sizes == {
        "rfm": 1,
        "lifecycle": 1,
        "predictive": 1,
        "rule": 1,
        "lookalike_seed": 3,
        "suppression": 2,
    }


def test_definition_errors_name_the_node(api_b, client_b):
    bad = {"name": "x", "kind": "rule", "definition": {"all": [{"orders": {"count": 2}}]}}
    response = post(api_b, "/api/v1/segments/", bad)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_definition"
    assert body["errors"] == [
        {"path": "all[0].orders.count", "message": body["errors"][0]["message"]}
    ]
    assert "all[0].orders.count" in body["message"]
    response = post(api_b, "/api/v1/segments/", {"name": "x", "kind": "cluster", "definition": {}})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "kind" in response.json()["errors"]
    assert Segment.objects.for_client(client_b).count() == 0


def test_tier_errors_are_json_with_stable_codes(api_a, client_a):
    response = post(
        api_a,
        "/api/v1/segments/",
        {"name": "x", "kind": "predictive", "definition": {"churn_at_least": 0.7}},
    )
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "tier_feature_predictive"
    assert "Advanced CVM" in body["message"]
    assert body["required_tier"] == "advanced"
    for i in range(5):
        created = post(api_a, "/api/v1/segments/", {**RFM_BEST, "name": f"s{i}"})
        assert created.status_code == 201
    response = post(api_a, "/api/v1/segments/", {**RFM_BEST, "name": "sixth"})
    assert response.status_code == 403
    assert response.json()["code"] == "tier_limit_segments"
    assert response.json()["limit"] == 5
    assert "Foundation" in response.json()["message"]
    assert Segment.objects.for_client(client_a).count() == 5


def test_name_taken_and_read_only_key(api_b, client_b, make_api):
    assert post(api_b, "/api/v1/segments/", RFM_BEST).status_code == 201
    response = post(api_b, "/api/v1/segments/", RFM_BEST)
    assert response.status_code == 400
    assert response.json()["code"] == "segment_name_taken"
    _key, raw = api_key_create(client=client_b, name="ro", scopes=["read"])
    read_only = make_api(raw)
    assert read_only.get("/api/v1/segments/").status_code == 200
    response = post(read_only, "/api/v1/segments/", {**RFM_BEST, "name": "y"})
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert post(read_only, "/api/v1/scoring/run/", {}).status_code == 403


# --------------------------------------------------------------------------------------------
# Members and scores


def test_members_with_cursor_pagination(api_b, client_b, base_b):
    segment_id = post(
        api_b,
        "/api/v1/segments/",
        {**RFM_BEST, "definition": {"names": ["Champions", "New", "At Risk"]}},
    ).json()["id"]
    url = f"/api/v1/segments/{segment_id}/members/?page_size=2"
    first = api_b.get(url).json()
    assert [m["customer"]["external_id"] for m in first["results"]] == ["c1", "c2"]
    assert first["results"][0]["customer"]["email"] == "c1@shop.ru"
    assert first["results"][0]["entered_at"]
    second = api_b.get(first["next"]).json()
    assert [m["customer"]["external_id"] for m in second["results"]] == ["c4"]
    assert second["next"] is None


def test_customer_scores(api_b, client_b, base_b):
    segment_create(client=client_b, name="Лучшие", kind="rfm", definition={"names": ["Champions"]})
    c1 = Customer.objects.for_client(client_b).get(external_id="c1")
    body = api_b.get(f"/api/v1/customers/{c1.pk}/scores/").json()
    assert body["external_id"] == "c1"
    assert body["rfm_segment"] == "Champions"
    assert body["churn_probability"] == 0.1
    assert body["predicted_clv"] == "9000.00"
    assert [s["name"] for s in body["segments"]] == ["Лучшие"]
    c3 = Customer.objects.for_client(client_b).get(external_id="c3")
    response = api_b.get(f"/api/v1/customers/{c3.pk}/scores/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_scored"
    response = api_b.get("/api/v1/customers/abc/scores/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# --------------------------------------------------------------------------------------------
# Scoring runs


@pytest.fixture
def eager_celery(monkeypatch):
    from config.celery import app as celery_app

    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


def test_scoring_run_is_enqueued_after_commit(api_b, client_b, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(api_b, "/api/v1/scoring/run/", {})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["status_url"] == f"/api/v1/scoring/runs/{body['id']}/"
    assert len(callbacks) == 1  # scoring_run_task.delay, after the commit
    run = ScoringRun.objects.for_client(client_b).get()
    assert (run.pk, run.source) == (body["id"], "api")
    again = post(api_b, "/api/v1/scoring/run/", {})
    assert again.status_code == 409
    assert again.json()["code"] == "scoring_run_active"
    assert again.json()["id"] == run.pk
    assert ScoringRun.objects.for_client(client_b).count() == 1


def test_scoring_run_executes_and_refreshes_segments(
    api_b, client_b, base_b, django_capture_on_commit_callbacks, eager_celery
):
    segment = segment_create(
        client=client_b,
        name="Все с заказами",
        kind="rule",
        definition={"orders": {}},
        refresh=False,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_b, "/api/v1/scoring/run/", {})
    status = api_b.get(response.json()["status_url"]).json()
    assert status["status"] == "succeeded", status
    assert status["progress"] == 100
    assert status["customers"] == 4
    snapshot = SegmentSizeSnapshot.objects.for_client(client_b).get(segment=segment)
    assert (snapshot.run_id, snapshot.size) == (status["id"], 3)
    assert api_b.get("/api/v1/scoring/runs/").json()["results"][0]["id"] == status["id"]


# --------------------------------------------------------------------------------------------
# Another client's key


def _routes():
    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    return list(walk(segments_api.urlpatterns))


def test_every_route_with_an_id_is_404_for_another_clients_key(api_a, api_b, client_a, base_b):
    """Client A's key on client B's real objects: the same JSON 404 as for a missing id, and
    writes change nothing."""
    segment = post(api_b, "/api/v1/segments/", RFM_BEST).json()
    run = ScoringRun.objects.create(client=Segment.objects.unscoped().get().client)
    customer = Customer.objects.unscoped().get(external_id="c1")
    objects = {"segments": segment["id"], "runs": run.pk, "customers": customer.pk}
    with_ids = [r for r in _routes() if "<" in r]
    assert len(with_ids) == 4  # segment, its members, a run, a customer's scores
    for route in with_ids:
        owner = next(name for name in objects if f"{name}/" in route)
        url = "/api/v1/" + re.sub(r"<(?:\w+:)?\w+>", str(objects[owner]), route)
        assert api_b.get(url).status_code == 200, url
        response = api_a.get(url)
        assert response.status_code == 404, url
        assert response.json() == {"code": "not_found", "message": "Не найдено."}
    url = f"/api/v1/segments/{segment['id']}/"
    assert patch(api_a, url, {"name": "чужой"}).status_code == 404
    assert put(api_a, url, {**RFM_BEST, "name": "чужой"}).status_code == 404
    assert Segment.objects.unscoped().get().name == "Лучшие"
    assert api_a.get("/api/v1/segments/").json()["results"] == []
    assert api_a.get("/api/v1/scoring/runs/").json()["results"] == []
    assert SegmentMembership.objects.unscoped().filter(client=client_a).count() == 0


def test_schema_documents_the_routes(api_a):
    schema = api_a.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = json.loads(schema.content)["paths"]
    for route in (
        "/api/v1/segments/",
        "/api/v1/segments/{id}/",
        "/api/v1/segments/{id}/members/",
        "/api/v1/customers/{id}/scores/",
        "/api/v1/scoring/run/",
        "/api/v1/scoring/runs/{id}/",
    ):
        assert route in paths, route
    parameter = paths["/api/v1/segments/{id}/"]["get"]["parameters"][0]
    assert parameter["schema"]["type"] == "integer"
