"""What audiences and segments hold about a person, end to end through consent: the access
archive lists the person's scores, segment stays and the platforms that hold them; an erasure
takes the person off every platform at the sync it queues, and afterwards no stored snapshot
holds their values."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, timedelta
from decimal import Decimal

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from audiences import tasks
from audiences.models import Audience, AudienceSnapshot, AudienceSnapshotChunk, SyncRun
from audiences.services import audience_sync_request, audience_update
from audiences.snapshots import snapshot_build
from audiences.sync import sync_run_execute
from clients.models import Customer
from consent.models import DataSubjectRequest
from consent.requests import customer_erase, dsr_access_archive, dsr_create
from segments.models import CustomerScore, ScoringRun
from segments.segmentation import segment_create, segment_refresh

from .conftest import (
    FAST,
    build_world,
    make_audience,
    md5,
    sha256,
    vk_destination,
    yandex_destination,
)

pytestmark = pytest.mark.django_db

Kind = DataSubjectRequest.Kind
PERSON = "c000100"


def sync(audience) -> SyncRun:
    run, _ = audience_sync_request(audience=audience, source="test", enqueue=False)
    return sync_run_execute(run, http_options=FAST)


def execute(run_id: int) -> SyncRun:
    return sync_run_execute(SyncRun.objects.unscoped().get(pk=run_id), http_options=FAST)


def stored_values() -> set[str]:
    """Every value of every stored snapshot chunk (all clients)."""
    values = set()
    for text in AudienceSnapshotChunk.objects.values_list("values", flat=True):
        values.update(text.split("\n"))
    return values


def person_hashes(customer: Customer) -> dict[str, str]:
    phone = customer.phone.lstrip("+")
    return {
        "yandex email": sha256(customer.email),
        "yandex phone": sha256(phone),
        "vk email": md5(customer.email),
        "vk phone": md5(phone),
    }


@pytest.fixture
def sent(monkeypatch):
    """The sync tasks enqueued (after commit), instead of sending them to a broker."""
    calls: dict[str, list] = {"sync": [], "after": []}
    monkeypatch.setattr(
        tasks.audience_sync_task, "delay", lambda run_id: calls["sync"].append(run_id)
    )
    monkeypatch.setattr(
        tasks.audience_sync_after_task,
        "delay",
        lambda audience_id, run_id: calls["after"].append((audience_id, run_id)),
    )
    return calls


@pytest.fixture
def synced(client_a, yandex_stub, vk_stub):
    """2100 customers in one segment, synced to Yandex Audiences (SHA-256) and VK Ads (MD5)."""
    world = build_world(client_a, 2100)
    yandex = make_audience(world, yandex_destination(client_a), name="Я")
    vk = make_audience(world, vk_destination(client_a), name="ВК")
    for audience in (yandex, vk):
        assert sync(audience).status == SyncRun.Status.SUCCEEDED
        audience.refresh_from_db()
    yandex_stub.process_all()
    vk_stub.process_all()
    return world, yandex, vk


def archive_data(request: DataSubjectRequest) -> tuple[dict, dict[str, bytes]]:
    with request.archive.open("rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    return json.loads(files["data.json"])["sections"], files


def test_access_archive_lists_scores_segment_stays_and_the_platforms_that_hold_the_person(
    client_a, synced, yandex_stub, vk_stub, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    world, yandex, vk = synced
    person, unconsented = world.customers[PERSON], world.customers["c000001"]
    run = ScoringRun.objects.create(
        client=client_a, status=ScoringRun.Status.SUCCEEDED, as_of=date(2026, 3, 31)
    )
    CustomerScore.objects.create(
        customer=person,
        client=client_a,
        run=run,
        recency_days=12,
        frequency=4,
        monetary=Decimal("15400.00"),
        r_score=5,
        f_score=4,
        m_score=4,
        rfm_segment="Champions",
        lifecycle_stage="Active",
        p_alive=0.93,
        churn_probability=0.07,
        predicted_clv=Decimal("23100.50"),
        clv_percentile=91,
        computed_at=timezone.now(),
    )
    # A past stay: in «VIP» while named «Вип», out of it once renamed.
    vip = segment_create(
        client=client_a,
        name="VIP",
        kind="rule",
        definition={"all": [{"attribute": "first_name", "op": "eq", "value": "Вип"}]},
    )
    Customer.objects.for_client(client_a).filter(pk=person.pk).update(first_name="Вип")
    segment_refresh(segment=vip)
    Customer.objects.for_client(client_a).filter(pk=person.pk).update(first_name="Анна")
    segment_refresh(segment=vip, now=timezone.now() + timedelta(minutes=1))

    request = dsr_create(client=client_a, kind=Kind.ACCESS, customer=person)
    dsr_access_archive(request=request)
    sections, files = archive_data(request)

    (score,) = sections["scores"]
    assert (score["rfm_segment"], score["lifecycle_stage"]) == ("Champions", "Active")
    assert (score["r_score"], score["f_score"], score["m_score"]) == (5, 4, 4)
    assert score["predicted_clv"] == "23100.50"
    assert (score["churn_probability"], score["clv_percentile"]) == (0.07, 91)
    assert (score["scoring_run_id"], score["scoring_as_of"]) == (run.pk, "2026-03-31")

    stays = {(s["segment"], s["current"]) for s in sections["segment_memberships"]}
    assert stays == {("Москва", True), ("VIP", False)}
    (past,) = [s for s in sections["segment_memberships"] if s["segment"] == "VIP"]
    assert past["entered_at"] < past["left_at"]

    hashes = person_hashes(person)
    exports = {
        (e["audience"], e["platform"], e["cabinet"], e["identifier"]): e["value_sent"]
        for e in sections["audience_exports"]
    }
    assert exports == {
        ("Я", "Яндекс Аудитории", "Яндекс", "email"): hashes["yandex email"],
        ("Я", "Яндекс Аудитории", "Яндекс", "phone"): hashes["yandex phone"],
        ("ВК", "VK Реклама", "vk_ads", "email"): hashes["vk email"],
        ("ВК", "VK Реклама", "vk_ads", "phone"): hashes["vk phone"],
    }
    # What the archive says was sent is what the platforms hold.
    segment_id, lists = yandex.remote["segment_id"], vk.remote["lists"]
    assert hashes["yandex email"] in yandex_stub.segment_values(segment_id, "email")
    assert hashes["yandex phone"] in yandex_stub.segment_values(segment_id, "phone")
    assert hashes["vk email"] in vk_stub.list_values(lists["emails"]["id"])
    assert hashes["vk phone"] in vk_stub.list_values(lists["phones"]["id"])
    for export in sections["audience_exports"]:
        assert export["sent_at"] is not None
        assert export["recipient"] in ("ООО «Яндекс»", "ООО «ВК»")
    assert {e["hashing"] for e in sections["audience_exports"]} == {"SHA-256", "MD5"}
    readme = files["README.txt"].decode("utf-8")
    assert "audience_exports.csv — передача рекламным платформам" in readme
    assert "scores.csv — оценки покупателя" in readme
    assert hashes["vk phone"] in files["audience_exports.csv"].decode("utf-8-sig")

    # Someone who never consented was exported nowhere and has no scores.
    other = dsr_create(client=client_a, kind=Kind.ACCESS, customer=unconsented)
    dsr_access_archive(request=other)
    other_sections, _ = archive_data(other)
    assert other_sections["audience_exports"] == []
    assert other_sections["scores"] == []
    assert [s["segment"] for s in other_sections["segment_memberships"]] == ["Москва"]


def test_erasure_takes_the_person_off_every_platform_and_out_of_every_snapshot(
    client_a, synced, yandex_stub, vk_stub, sent, django_capture_on_commit_callbacks
):
    world, yandex, vk = synced
    person = world.customers[PERSON]
    hashes = person_hashes(person)
    assert set(hashes.values()) <= stored_values()
    before = {a.pk: a.confirmed_snapshot.size for a in (yandex, vk)}
    request = dsr_create(client=client_a, kind=Kind.ERASURE, customer=person)

    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=person, request=request)

    runs = SyncRun.objects.for_client(client_a).filter(pk__in=sent["sync"])
    assert {r.audience_id for r in runs} == {yandex.pk, vk.pk}
    assert {r.source for r in runs} == {"erasure"}
    assert sent["after"] == []
    request.refresh_from_db()
    assert "удаляется с платформ синхронизацией" in request.resolution
    assert "«Я»" in request.resolution
    assert "«ВК»" in request.resolution
    # Until the platforms have removed them, the held snapshots keep the values (they are what
    # tells the sync to remove them).
    assert set(hashes.values()) <= stored_values()

    results = {run.audience_id: execute(run.pk) for run in runs}

    for audience in (yandex, vk):
        run = results[audience.pk]
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert (run.added, run.removed) == (0, 2)
        assert run.held_back_erased == 1
        audience.refresh_from_db()
        assert audience.confirmed_snapshot_id == run.snapshot_id
        snapshot = audience.confirmed_snapshot
        assert snapshot.size == before[audience.pk] - 2
        assert snapshot.counts == {"email": snapshot.size // 2, "phone": snapshot.size // 2}
    segment_id = yandex.remote["segment_id"]
    assert yandex_stub.segment_values(segment_id, "email") == world.emails(sha256, exclude={PERSON})
    assert yandex_stub.segment_values(segment_id, "phone") == world.phones(sha256, exclude={PERSON})
    lists = vk.remote["lists"]
    assert vk_stub.list_values(lists["emails"]["id"]) == world.emails(md5, exclude={PERSON})
    assert vk_stub.list_values(lists["phones"]["id"]) == world.phones(md5, exclude={PERSON})
    # No snapshot of any audience holds the person any more; everyone else is where they were.
    assert not set(hashes.values()) & stored_values()
    assert set(AudienceSnapshot.objects.for_client(client_a).values_list("pk", flat=True)) == {
        results[yandex.pk].snapshot_id,
        results[vk.pk].snapshot_id,
    }
    other = world.customers["c000200"]
    assert set(person_hashes(other).values()) <= stored_values()


def test_a_sync_under_way_at_the_erasure_is_followed_by_one_that_removes_the_person(
    client_a, yandex_stub, sent, django_capture_on_commit_callbacks
):
    world = build_world(client_a, 150)
    audience = make_audience(world, yandex_destination(client_a))
    assert sync(audience).status == SyncRun.Status.SUCCEEDED
    yandex_stub.process_all()
    person = world.customers[PERSON]
    # A run interrupted after building its snapshot, which still holds the person.
    stale, _ = audience_sync_request(audience=audience, source="test", enqueue=False)
    stale.snapshot = AudienceSnapshot.objects.create(client_id=client_a.pk, audience=audience)
    snapshot_build(audience, stale.snapshot, hashing="sha256")
    SyncRun.objects.for_client(client_a).filter(pk=stale.pk).update(snapshot=stale.snapshot)

    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=person)

    assert sent == {"sync": [], "after": [(audience.pk, stale.pk)]}
    with pytest.raises(Retry):  # waits while the run under way has not ended
        tasks.audience_sync_after_task(audience.pk, stale.pk)

    assert execute(stale.pk).status == SyncRun.Status.SUCCEEDED
    segment_id = Audience.objects.for_client(client_a).get(pk=audience.pk).remote["segment_id"]
    # That run's snapshot predates the erasure: the person is still on the platform.
    assert sha256(person.email) in yandex_stub.segment_values(segment_id, "email")

    with django_capture_on_commit_callbacks(execute=True):  # the service enqueues after commit
        follow_up = tasks.audience_sync_after_task(audience.pk, stale.pk)

    assert sent["sync"] == [follow_up]
    run = execute(follow_up)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.removed, run.held_back_erased) == (2, 1)
    assert sha256(person.email) not in yandex_stub.segment_values(segment_id, "email")
    assert yandex_stub.segment_values(segment_id, "email") == world.emails(sha256, exclude={PERSON})
    assert not set(person_hashes(person).values()) & stored_values()


def test_switched_off_audience_keeps_the_person_until_its_next_sync_then_lets_go(
    client_a, yandex_stub, sent, django_capture_on_commit_callbacks
):
    world = build_world(client_a, 150)
    audience = make_audience(world, yandex_destination(client_a))
    assert sync(audience).status == SyncRun.Status.SUCCEEDED
    yandex_stub.process_all()
    audience.refresh_from_db()  # audience_update saves the whole row, remote state included
    audience_update(audience=audience, is_active=False)
    person = world.customers[PERSON]
    request = dsr_create(client=client_a, kind=Kind.ERASURE, customer=person)

    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=person, request=request)

    assert sent == {"sync": [], "after": []}
    assert not SyncRun.objects.for_client(client_a).filter(source="erasure").exists()
    request.refresh_from_db()
    assert "отключены, субъект остаётся на платформе" in request.resolution
    assert sha256(person.email) in stored_values()  # what the platform still holds

    audience_update(audience=audience, is_active=True)
    run = sync(audience)

    assert (run.status, run.removed) == (SyncRun.Status.SUCCEEDED, 2)
    segment_id = Audience.objects.for_client(client_a).get(pk=audience.pk).remote["segment_id"]
    assert sha256(person.email) not in yandex_stub.segment_values(segment_id, "email")
    assert not set(person_hashes(person).values()) & stored_values()


def test_erasure_of_someone_no_audience_holds_starts_no_sync(
    client_a, yandex_stub, sent, django_capture_on_commit_callbacks
):
    world = build_world(client_a, 150)
    audience = make_audience(world, yandex_destination(client_a))
    assert sync(audience).status == SyncRun.Status.SUCCEEDED
    outsider = Customer.objects.create(
        client=client_a, external_id="outsider", email="outsider@example.ru", city="Казань"
    )

    with django_capture_on_commit_callbacks(execute=True):
        customer_erase(customer=outsider)

    assert sent == {"sync": [], "after": []}
    assert not SyncRun.objects.for_client(client_a).filter(source="erasure").exists()
