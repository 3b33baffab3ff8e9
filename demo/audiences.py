"""Demo audiences for `make run`: each demo client gets a Yandex Audiences and a VK Ads cabinet
(with the stubs' demo credentials: `make run` points the platforms' addresses,
YANDEX_AUDIENCES_BASE_URL and VK_ADS_BASE_URL, at the loopback stubs), a segment of last year's
buyers with recent purchasers suppressed, and a first sync queued for the worker."""

from __future__ import annotations

from audiences.models import Audience, Destination
from audiences.services import audience_create, audience_sync_request, destination_create
from clients.models import Client
from segments.models import Segment

from .segments import demo_segment

DEMO_YANDEX_TOKEN = "demo-yandex-token"  # noqa: S105 - the stub's demo token, not a secret
DEMO_VK_CLIENT = ("demo", "demo-secret")


def demo_audiences(*, client: Client, queue_sync: bool = True) -> list[Audience]:
    """Create (once) the client's demo cabinets and audiences; returns the audiences."""
    if Destination.objects.for_client(client).exists():
        return list(Audience.objects.for_client(client))
    buyers = demo_segment(
        client,
        "Покупатели за год",
        Segment.Kind.RULE,
        {"all": [{"orders": {"within_days": 365}}]},
    )
    recent = demo_segment(
        client,
        "Купили за 14 дней (исключить)",
        Segment.Kind.SUPPRESSION,
        {"type": "recent_purchasers", "days": 14},
    )
    yandex = destination_create(
        client=client,
        name="Яндекс Аудитории (демо)",
        platform=Destination.Platform.YANDEX_AUDIENCES,
        credentials={"token": DEMO_YANDEX_TOKEN},
    )
    vk = destination_create(
        client=client,
        name="VK Реклама (демо)",
        platform=Destination.Platform.VK_ADS,
        credentials={"client_id": DEMO_VK_CLIENT[0], "client_secret": DEMO_VK_CLIENT[1]},
    )
    audiences = [
        audience_create(
            client=client,
            name="Ретаргетинг: покупатели за год (Яндекс)",
            segment=buyers,
            destination=yandex,
            suppression_segments=[recent],
        ),
        audience_create(
            client=client,
            name="Ретаргетинг: покупатели за год (VK)",
            segment=buyers,
            destination=vk,
            suppression_segments=[recent],
        ),
    ]
    if queue_sync:
        for audience in audiences:
            audience_sync_request(audience=audience, source="demo")
    return audiences
