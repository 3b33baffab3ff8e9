"""Reads of the clients app."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal

from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import ApiKey, Customer, ImportJob, Order
from .normalize import NormalizationError, normalize_email, normalize_phone

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


CONTACT_NORMALIZERS = {"email": normalize_email, "phone": normalize_phone}


def customer_contact_q(*, field: str, value: str, prefix: str = "") -> Q:
    """Customers whose ``field`` ("email" or "phone") is ``value`` in any spelling, normalised
    the way ingestion stores it. Raises NormalizationError for a value that is no email / phone
    (the API answers that with 400; :func:`customer_identity_q` falls back to the external id)."""
    return Q(**{f"{prefix}{field}": CONTACT_NORMALIZERS[field](value)})


def customer_identity_q(term: str, prefix: str = "") -> Q | None:
    """The one look-up of a customer by what a person types: external id, email or phone in any
    spelling ("8 (916) 123-45-67"), normalised the way ingestion stores them, so that the
    (client, email) / (client, phone) / (client, external_id) indexes serve it. ``prefix``
    reaches the customer through a relation ("customer__"). None for an empty term."""
    term = term.strip()
    if not term:
        return None
    q = Q(**{f"{prefix}external_id": term})
    try:
        q |= customer_contact_q(
            field="email" if "@" in term else "phone", value=term, prefix=prefix
        )
    except NormalizationError:
        pass  # not an email / phone: the external id is all there is to match
    return q


def customers_search(*, client, term: str) -> QuerySet:
    """A client's customers, newest first, narrowed by :func:`customer_identity_q`."""
    queryset = Customer.objects.for_client(client).order_by("-updated_at", "-id")
    q = customer_identity_q(term)
    return queryset if q is None else queryset.filter(q)


def customer_ids_search(*, client_ids: Iterable[int], term: str, limit: int = 1000) -> list[int]:
    """Ids of the customers of ``client_ids`` (the clients a staff user sees) that match
    ``term`` by :func:`customer_identity_q`, at most ``limit``; for admin searches of the rows
    that point to a customer (orders, events, the consent ledger)."""
    q = customer_identity_q(term)
    if q is None:
        return []
    customers = Customer.objects.unscoped().filter(client_id__in=sorted(client_ids)).filter(q)
    return list(customers.values_list("pk", flat=True)[:limit])


def customer_orders_recent(*, customer, limit: int = 100) -> QuerySet:
    return (
        Order.objects.for_client(customer.client_id)
        .filter(customer=customer)
        .order_by("-placed_at")[:limit]
    )


def import_jobs_list(*, client) -> QuerySet:
    return ImportJob.objects.for_client(client).order_by("-created_at")


def membership_role(*, user, client) -> str | None:
    """The portal role (``ClientMembership.Role``) of ``user`` at ``client``, or None."""
    from .models import ClientMembership

    return (
        ClientMembership.objects.filter(user=user, client=client)
        .values_list("role", flat=True)
        .first()
    )
