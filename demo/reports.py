"""Demo measurement for `make run`: what a client's marketer sees in the portal's results, KPI
and attribution pages on the first run.

- Report settings (message costs, the 22.4 % benchmark) with the defaults.
- A year of media spend uploaded as a CSV file through the real upload
  (``reports.spend.spend_csv_upload``): Yandex Direct search, VK Ads retargeting and myTarget,
  so CAC, ROAS and LTV/CAC have a denominator.
- The monthly KPIs, computed at once (``reports.kpis``) rather than on the first night.
- Purchases by the people the chains enrolled four days ago, ingested as orders through the
  clients' ingestion: a simulated behaviour in which the treatment arm buys a little more often
  than the holdout (the planted effect below), so the results page shows both arms; the engine's
  next tick converts them as it would real orders. The uplift, its interval and the guards are
  computed by the platform from these rows, as they would be from a real shop's.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
from django.utils import timezone

from campaigns.arms import HOLDOUT
from campaigns.models import Enrollment
from clients.ingest import ingest_records
from clients.models import Client
from reports.kpis import kpis_compute
from reports.models import ReportSettings, SpendDay
from reports.spend import spend_csv_upload

SPEND_DAYS = 365
CAMPAIGNS = (
    # (campaign, name, channel, mean daily cost in RUB, cost per click)
    ("direct-search", "Поиск: бренд и категории", "yandex/cpc", 9_000, 35),
    ("vk-retargeting", "VK Реклама: ретаргетинг", "vk/cpc", 4_000, 22),
    ("mytarget-lookalike", "myTarget: похожие", "mytarget/cpc", 2_500, 18),
)
# The simulated chance of a purchase during the four demo days, per arm.
PURCHASE_SHARE = {"treatment": 0.12, HOLDOUT: 0.08}


def _spend_csv(client: Client, rng: np.random.Generator, today: dt.date) -> bytes:
    out = io.StringIO()
    out.write("day,campaign,campaign_name,channel,cost,clicks,impressions\n")
    for back in range(SPEND_DAYS, 0, -1):
        day = today - dt.timedelta(days=back)
        weekly = 1.0 + 0.15 * np.sin(2 * np.pi * day.weekday() / 7)
        for campaign, name, channel, mean_cost, cpc in CAMPAIGNS:
            cost = round(float(mean_cost * weekly * rng.lognormal(0.0, 0.2)), 2)
            clicks = max(1, int(cost / cpc * rng.uniform(0.8, 1.2)))
            impressions = clicks * int(rng.integers(40, 90))
            out.write(f"{day},{campaign},{name},{channel},{cost:.2f},{clicks},{impressions}\n")
    return out.getvalue().encode()


def _chain_purchases(client: Client, rng: np.random.Generator) -> int:
    """Orders of enrolled people after their enrolment, more often in the treatment arm."""
    now = timezone.now()
    rows = list(
        Enrollment.objects.for_client(client)
        .filter(enrolled_at__lt=now - dt.timedelta(hours=2))
        .values_list("pk", "arm", "enrolled_at", "customer__external_id")
    )
    records = []
    for pk, arm, enrolled_at, external_id in rows:
        if rng.random() >= PURCHASE_SHARE.get(arm, 0.0):
            continue
        span = max((now - enrolled_at).total_seconds() - 3600, 60)
        placed_at = enrolled_at + dt.timedelta(seconds=float(rng.uniform(60, span)))
        records.append(
            {
                "external_id": f"demo-chain-order-{pk}",
                "customer_external_id": external_id,
                "placed_at": placed_at.isoformat(),
                "amount": f"{float(rng.lognormal(8.0, 0.5)):.2f}",
                "channel": "site",
            }
        )
    if records:
        ingest_records(client=client, kind="orders", records=records, partial=True)
    return len(records)


def demo_reports(*, client: Client, seed: int = 42) -> dict[str, int]:
    """Create (once) the client's report settings and spend, and the chains' demo purchases;
    compute the client's monthly KPIs."""
    ReportSettings.objects.for_client(client).get_or_create(client=client)
    rng = np.random.default_rng([seed, client.pk, 13])
    result = {"spend_rows": 0, "chain_orders": 0}
    if not SpendDay.objects.for_client(client).exists():
        upload = spend_csv_upload(
            client=client, content=_spend_csv(client, rng, timezone.localdate()), source="cli"
        )
        result["spend_rows"] = upload.written
        result["chain_orders"] = _chain_purchases(client, rng)
    # The nightly run computes them too; the demo shows them before its first night.
    result["kpi_months"] = kpis_compute(client=client)
    return result
