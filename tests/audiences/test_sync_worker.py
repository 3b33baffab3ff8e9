"""Audience syncs on a real Celery worker (Redis broker of `make test`), against the stubs."""

from __future__ import annotations

import threading
import time
from importlib import import_module

import pytest
from django.apps import apps

from audiences.models import SyncRun
from audiences.services import audience_sync_request
from audiences.tasks import audience_syncs_recover_task
from clients.services import client_create
from consent import services as consent_services
from tests.job_recovery import WORKER_ENV as RECOVERY_ENV
from tests.job_recovery import (
    hold_past_stale,
    kill,
    recover_until_claimed,
    report,
    use_test_timings,
)
from tests.stubs.vk_ads import VkAdsStub
from tests.stubs.yandex_audiences import YandexAudiencesStub

from .conftest import (
    build_world,
    make_audience,
    md5,
    point_platforms_at,
    sha256,
    vk_destination,
    yandex_destination,
)

# serialized_rollback: the flush after each test keeps the migrations' reference data (tiers,
# consent purposes, content types) for the transactional tests that run later.
pytestmark = [
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

WORKER_ENV = {"AD_PLATFORM_TIMEOUT": "60", "AD_PLATFORM_MAX_BACKOFF": "0.5"}


@pytest.fixture
def seeded_client(db):
    """Tiers and consent purposes come from data migrations, which an earlier transactional
    test's flush removes; seed them again when missing."""
    from clients.models import Tier
    from consent.models import ConsentPurpose

    if not Tier.objects.exists():
        import_module("clients.migrations.0002_seed_tiers").seed_tiers(apps, None)
    if not ConsentPurpose.objects.exists():
        import_module("consent.migrations.0002_seed_purposes").seed(apps, None)
        consent_services._PURPOSES.clear()  # the per-process cache holds the flushed rows
    return client_create(name="Аудитории Воркер", tier_code="foundation")


def wait_for(run: SyncRun, worker, seconds: float = 120) -> SyncRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status not in (SyncRun.Status.PENDING, SyncRun.Status.RUNNING):
            return run
        assert worker.poll() is None, "the worker died"
        time.sleep(0.3)
    raise AssertionError(f"run {run.pk} still {run.status}")


def test_worker_syncs_a_segment_to_each_platform(start_worker, seeded_client, settings):
    world = build_world(seeded_client, 2050)
    with (
        YandexAudiencesStub(tokens={"test-yandex-token"}, quota_per_minute=None) as yandex,
        VkAdsStub(credentials={"test-client": "test-secret"}) as vk,
        VkAdsStub(credentials={"test-client": "test-secret"}, platform="mytarget") as mytarget,
    ):
        point_platforms_at(settings, yandex=yandex, vk=vk, mytarget=mytarget)
        audiences = [
            make_audience(world, yandex_destination(seeded_client), name="Я"),
            make_audience(world, vk_destination(seeded_client), name="VK"),
            make_audience(world, vk_destination(seeded_client, platform="mytarget"), name="MT"),
        ]
        # Their creation asked for a first sync at once (the task sent after commit, here at
        # once): the worker starts the three runs on its own.
        worker = start_worker(**WORKER_ENV)
        runs = []
        for audience in audiences:
            run = wait_for_run(audience, worker)
            assert run.source == "created"
            runs.append(run)
        for run in runs:
            assert wait_for(run, worker).status == SyncRun.Status.SUCCEEDED, run.error
        for audience in audiences:
            audience.refresh_from_db()
        yandex_id = audiences[0].remote["segment_id"]
        assert yandex.segment_values(yandex_id, "email") == world.emails(sha256)
        for stub, audience in ((vk, audiences[1]), (mytarget, audiences[2])):
            lists = audience.remote["lists"]
            assert stub.list_values(lists["emails"]["id"]) == world.emails(md5)
            assert stub.list_values(lists["phones"]["id"]) == world.phones(md5)


def wait_for_run(audience, worker, seconds: float = 60) -> SyncRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = SyncRun.objects.for_client(audience.client_id).filter(audience=audience).first()
        if run is not None:
            return run
        assert worker.poll() is None, "the worker died"
        time.sleep(0.3)
    raise AssertionError(f"no run of audience {audience.pk}")


class StallingYandexStub(YandexAudiencesStub):
    """Does the first upload, then holds the reply until released: the worker is killed while
    it waits, after the platform has the file and before the platform's id is saved."""

    def __init__(self, **options):
        super().__init__(**options)
        self.uploaded = threading.Event()
        self.release = threading.Event()

    def handle(self, request):
        response = super().handle(request)
        if request.path.endswith("upload_csv_file") and not self.uploaded.is_set():
            self.uploaded.set()
            self.release.wait(60)
        return response


def test_worker_killed_mid_sync_then_the_run_completes_without_a_second_upload(
    start_worker, seeded_client, settings
):
    """The worker waits for the platform's reply (writing no progress) past the stale threshold:
    its heartbeat keeps the run its own; killed, the run is recovered once its heartbeat is
    stale and resumed by another worker, which finds the upload instead of sending it again."""
    use_test_timings(settings)
    world = build_world(seeded_client, 300)
    with StallingYandexStub(tokens={"test-yandex-token"}, quota_per_minute=None) as yandex:
        point_platforms_at(settings, yandex=yandex)
        audience = make_audience(world, yandex_destination(seeded_client))
        worker = start_worker(**WORKER_ENV, **RECOVERY_ENV)
        run, _ = audience_sync_request(audience=audience, source="test")
        assert yandex.uploaded.wait(60), "the upload never reached the stub"
        run.refresh_from_db()
        hold_past_stale(run, audience_syncs_recover_task)
        killed_at = kill(worker)
        yandex.release.set()
        run.refresh_from_db()
        assert run.status == SyncRun.Status.RUNNING
        audience.refresh_from_db()
        assert not audience.remote, "the id of the upload was never received"

        # The periodic recovery puts it back in line once its heartbeat is stale.
        second = start_worker(**WORKER_ENV, **RECOVERY_ENV)
        seconds = recover_until_claimed(run, audience_syncs_recover_task, killed_at, second)
        report("audience sync", seconds)
        run = wait_for(run, second)

        assert (run.status, run.attempt) == (SyncRun.Status.SUCCEEDED, 2), run.error
        assert yandex.upload_count == 1
        audience.refresh_from_db()
        segment = yandex.segment(audience.remote["segment_id"])
        assert segment["status"] != "uploaded"  # confirmed by the resumed run
        assert yandex.segment_values(segment["id"], "email") == world.emails(sha256)
        assert len(yandex.segments_named(segment["name"])) == 1
