"""Reads of the clients app."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from .models import ApiKey

API_KEY_PREFIX = "cvm"


def api_key_hash(secret: str) -> str:
    """Keys are 256-bit random, so a fast hash is enough (no password stretching needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_split(raw_key: str) -> tuple[str, str] | None:
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        return None
    return parts[1], parts[2]


def api_key_find_active(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key`` (``cvm_<prefix>_<secret>``), touching last_used_at."""
    split = api_key_split(raw_key)
    if split is None:
        return None
    prefix, secret = split
    api_key = (
        ApiKey.objects.select_related("client", "client__tier")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.hashed_secret, api_key_hash(secret)):
        return None
    now = timezone.now()
    if api_key.last_used_at is None or (now - api_key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def client_base_summary(*, client) -> dict:
    """Headline numbers of a client's base for the portal dashboard."""
    from django.db.models import Count, Sum

    from .models import Customer, Order

    orders = Order.objects.for_client(client)
    paid = orders.filter(status=Order.Status.PAID).aggregate(revenue=Sum("amount"), n=Count("id"))
    revenue = paid["revenue"] or Decimal("0")
    return {
        "customers": Customer.objects.for_client(client).count(),
        "orders": orders.count(),
        "paid_orders": paid["n"],
        "revenue": revenue,
        "average_order": (revenue / paid["n"]).quantize(Decimal("0.01")) if paid["n"] else None,
    }


def revenue_by_month(*, client, months: int = 12) -> list[dict]:
    """Paid revenue and buyers per calendar month (client's time zone), oldest first."""
    from django.db.models import Count, Sum
    from django.db.models.functions import TruncMonth

    from .models import Order

    since = (timezone.now() - timedelta(days=31 * months)).replace(day=1)
    rows = (
        Order.objects.for_client(client)
        .filter(status=Order.Status.PAID, placed_at__gte=since)
        .annotate(month=TruncMonth("placed_at", tzinfo=client.tzinfo))
        .values("month")
        .annotate(revenue=Sum("amount"), buyers=Count("customer_id", distinct=True))
        .order_by("month")
    )
    return [
        {"month": r["month"].strftime("%Y-%m"), "revenue": r["revenue"], "buyers": r["buyers"]}
        for r in rows
    ]
