"""Audience sync benchmark: a segment of N members built into a snapshot, hashed and uploaded
to the Yandex Audiences and VK Ads loopback stubs, end to end through the real sync service.

    scripts/with_test_services.sh .venv/bin/python bench/audiences.py [--sizes 10000,100000,1000000]

(or ``make bench-audiences``). Set-up, not timed: N customers (email and phone each), a
granted ad_audiences consent for 95 % of them, 1 % in a suppression segment, all in the
synced segment. Set-up writes with INSERT ... SELECT (the consent rows with a placeholder hash:
the bench measures the export, not the ledger's chain).

Timed, per size and platform, in this process: ``audiences.sync.audience_sync_now`` from the
membership query to the platform's reply, printed per stage from the run's steps, with rows
per second and this process's peak RSS. The stubs run as ``python -m tests.stubs`` in a child
process (as the platform is another machine, its memory is not ours), parsing and checking
every line on the same 2 cores.
Then a second sync after 1 % withdrawals: the diff path (snapshot, difference, modify_data or
differential lists). Goal (issue 5): 1M members <= 20 s, memory bounded (streamed).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402
from measure import PeakRss  # noqa: E402

from audiences.services import audience_create, destination_create  # noqa: E402
from audiences.sync import audience_sync_now  # noqa: E402
from clients.models import Client  # noqa: E402
from clients.services import client_create  # noqa: E402
from consent.models import ConsentPurpose, ConsentRecord  # noqa: E402
from consent.purposes import AUDIENCE_PURPOSE  # noqa: E402
from consent.services import consent_text_create, consent_text_publish  # noqa: E402
from segments.models import Segment  # noqa: E402
from segments.segmentation import segment_create  # noqa: E402
from tests.consent.conftest import TEXT_PARTS  # noqa: E402
from tests.stubs.vk_ads import VkAdsStub  # noqa: E402
from tests.stubs.yandex_audiences import YandexAudiencesStub  # noqa: E402


def setup(size: int) -> tuple[Client, Segment, Segment]:
    client = client_create(
        name=f"Бенчмарк аудиторий {size} {time.time_ns()}", tier_code="enterprise"
    )
    texts = {}
    for purpose in ConsentPurpose.objects.all():
        text = consent_text_create(
            client=client, purpose_code=purpose.code, title=purpose.name, **TEXT_PARTS
        )
        texts[purpose.code] = consent_text_publish(text=text)
    purpose = ConsentPurpose.objects.get(code=AUDIENCE_PURPOSE)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_customer (client_id, external_id, email, phone, first_name, "
            "last_name, city, attributes, first_seen, source, created_at, updated_at) "
            "SELECT %s, 'c' || i, 'user' || i || '@example.ru', '+7916' || lpad(i::text, 7, '0'), "
            "CASE WHEN i %% 100 = 3 THEN 'Стоп' ELSE 'Анна' END, '', 'Москва', '{}', now(), "
            "'bench', now(), now() FROM generate_series(1, %s) AS i",
            [client.pk, size],
        )
        cursor.execute(
            "INSERT INTO consent_consentrecord (client_id, customer_id, subject_id, purpose_id, "
            "text_id, action, at, source, user_agent, url, form_id, details, prev_hash, hash, "
            "recorded_at) SELECT client_id, id, '', %s, %s, %s, now() - interval '1 day', "
            "'api', '', '', '', '{}', '', md5(id::text), now() FROM clients_customer "
            "WHERE client_id = %s AND id %% 20 <> 0",
            [purpose.pk, texts[AUDIENCE_PURPOSE].pk, ConsentRecord.Action.GRANTED, client.pk],
        )
        cursor.execute("ANALYZE clients_customer; ANALYZE consent_consentrecord")
    segment = segment_create(
        client=client,
        name="Все",
        kind="rule",
        definition={"all": [{"attribute": "city", "op": "eq", "value": "Москва"}]},
    )
    stop = segment_create(
        client=client,
        name="Стоп",
        kind="rule",
        definition={"all": [{"attribute": "first_name", "op": "eq", "value": "Стоп"}]},
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE segments_segmentmembership")
    return client, segment, stop


def withdraw(client: Client, share: int = 100) -> None:
    purpose = ConsentPurpose.objects.get(code=AUDIENCE_PURPOSE)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO consent_consentrecord (client_id, customer_id, subject_id, purpose_id, "
            "text_id, action, at, source, user_agent, url, form_id, details, prev_hash, hash, "
            "recorded_at) SELECT client_id, id, '', %s, NULL, %s, now(), 'api', '', '', '', "
            "'{}', '', md5(id::text || 'w'), now() FROM clients_customer "
            "WHERE client_id = %s AND id %% %s = 7",
            [purpose.pk, ConsentRecord.Action.WITHDRAWN, client.pk, share],
        )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@contextmanager
def stubs_process():
    """The loopback stubs in a child process; yields (yandex URL, VK URL). Processing takes no
    time, so a segment is ready for modify_data by the second sync."""
    yandex_port, vk_port, mytarget_port = free_ports(3)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs", "--quiet", "--processing-delay", "0",
         "--yandex-port", str(yandex_port), "--vk-port", str(vk_port),
         "--mytarget-port", str(mytarget_port), "--yandex-token", "bench",
         "--yandex-quota-per-minute", "1000", "--vk-client-id", "bench",
         "--vk-client-secret", "bench-secret"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in child.stdout:
            if line.startswith("Stubs running"):
                break
        else:
            raise SystemExit("the stubs did not start")
        yield (
            f"http://127.0.0.1:{yandex_port}{YandexAudiencesStub.prefix}",
            f"http://127.0.0.1:{vk_port}{VkAdsStub.prefix}",
        )
    finally:
        child.terminate()
        child.wait(30)


def timed_sync(audience, label: str) -> None:
    rss = PeakRss()
    started = time.perf_counter()
    with rss:
        run = audience_sync_now(audience, source="bench", http_options={"timeout": 600})
    seconds = time.perf_counter() - started
    print(
        f"  {label:<34} {seconds:7.2f} s  {run.members / seconds:>10,.0f} members/s  "
        f"peak RSS +{rss.delta_mib:,.0f} MiB  status={run.status} members={run.members:,} "
        f"exported={run.exported:,} held_back_consent={run.held_back_consent:,} "
        f"suppressed={run.suppressed:,} uploaded={run.uploaded:,} added={run.added:,} "
        f"removed={run.removed:,}"
    )
    if run.error:
        print(f"    error: {run.error}")
    if run.status != "succeeded":
        raise SystemExit(f"the sync did not succeed: {run.status}")
    for step in run.steps:
        print(f"    {step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {connection.vendor} "
          f"{connection.cursor().connection.info.server_version}")  # fmt: skip
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"\n{size:,} members")
        t0 = time.perf_counter()
        client, segment, stop = setup(size)
        print(f"  set-up (not timed): {time.perf_counter() - t0:.1f} s")
        with (
            stubs_process() as (yandex_url, vk_url),
            # the platforms' addresses are deployment settings, as `make run` sets them
            override_settings(YANDEX_AUDIENCES_BASE_URL=yandex_url, VK_ADS_BASE_URL=vk_url),
        ):
            ya_dest = destination_create(
                client=client, name="Я", platform="yandex_audiences",
                credentials={"token": "bench"},
            )  # fmt: skip
            vk_dest = destination_create(
                client=client, name="VK", platform="vk_ads",
                credentials={"client_id": "bench", "client_secret": "bench-secret"},
            )  # fmt: skip
            audiences = [
                audience_create(
                    client=client,
                    name=f"{dest.name}",
                    segment=segment,
                    destination=dest,
                    suppression_segments=[stop],
                )  # fmt: skip
                for dest in (ya_dest, vk_dest)
            ]
            for audience in audiences:
                timed_sync(audience, f"first sync, {audience.destination.platform}")
            withdraw(client)
            for audience in audiences:
                timed_sync(audience, f"after 1 % withdrawals, {audience.destination.platform}")


if __name__ == "__main__":
    main()
