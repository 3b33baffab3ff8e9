"""Purchases sent back to Yandex Metrica as offline conversions, per counter (an ``AdAccount``
of provider ``metrica``: ``remote_id`` the counter, ``conversion_target`` the goal,
``client_id_type`` how the counter knows the visitor).

Which purchases: the client's paid orders (not cancelled, not refunded) placed in the last 21
days (Metrica matches no older visit) and not yet sent to this counter; the unique key of
``MetricaUploadOrder`` (account, order) makes a second upload of an order impossible.

Whose: only people whose current consent (``consent.selectors``, the one rule) allows the
purpose ``AD_COOKIES``. What goes to Yandex is the Metrica cookie's ClientID tied to a
purchase, for measuring and optimising advertising (Direct's goals and bid strategies read
Metrica's conversions): that is the use of an advertising cookie, which is what the banner's
advertising-cookies consent covers. ``ANALYTICS_COOKIES`` covers the site's own statistics, not
handing purchases to an ad system (and a withdrawal request does not withdraw it);
``AD_AUDIENCES`` covers exporting contact data into targeting lists, which this is not.

Who lacks a ClientID (or UserId mode is off), or consent, is skipped and counted by reason
(``MetricaUpload.skipped``). An upload is written (with its orders) before it is sent and named
by a stored random ``comment``: after a timeout the next run looks it up by that comment
instead of sending it again. Uploads are polled until Metrica's status is final.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.crypto import CredentialsUnreadable
from clients.models import Customer, Order
from consent.purposes import AD_COOKIES
from consent.selectors import customers_with_consent_flag
from integrations.http import OutcomeUnknown, PlatformError, PlatformUnavailable
from integrations.yandex_metrica import (
    FINAL_STATUSES,
    OfflineConversion,
    YandexMetricaClient,
    conversions_csv,
)

from .accounts import ad_account_credentials
from .models import AdAccount, MetricaUpload, MetricaUploadOrder

logger = logging.getLogger(__name__)

METRICA_PURPOSE = AD_COOKIES
WINDOW = dt.timedelta(days=21)
PAST_MARGIN = dt.timedelta(minutes=1)  # DateTime must be in the past by Metrica's clock too
CURRENCY = "RUB"
NO_CONSENT = "no_consent"
NO_CLIENT_ID = "no_client_id"


def _classify(
    account: AdAccount, orders: list[Order]
) -> tuple[list[tuple[Order, str]], dict[str, int]]:
    """The orders that may go (with the visitor id to send) and the others counted by reason."""
    client_id = account.client_id
    people = {
        row["pk"]: row
        for row in customers_with_consent_flag(
            Customer.objects.for_client(client_id).filter(
                pk__in={order.customer_id for order in orders}
            ),
            METRICA_PURPOSE,
        ).values("pk", "consent_granted", "metrica_client_id", "external_id")
    }
    sendable: list[tuple[Order, str]] = []
    skipped = {NO_CONSENT: 0, NO_CLIENT_ID: 0}
    for order in orders:
        person = people.get(order.customer_id)
        if person is None or not person["consent_granted"]:
            skipped[NO_CONSENT] += 1
            continue
        if account.client_id_type == AdAccount.ClientIdType.USER_ID:
            visitor = person["external_id"]
        else:
            visitor = person["metrica_client_id"]
        if not visitor:
            skipped[NO_CLIENT_ID] += 1
            continue
        sendable.append((order, visitor))
    return sendable, skipped


def _eligible_orders(account: AdAccount, now: dt.datetime) -> list[Order]:
    sent = MetricaUploadOrder.objects.for_client(account.client_id).filter(account=account)
    return list(
        Order.objects.for_client(account.client_id)
        .filter(
            status=Order.Status.PAID,
            placed_at__gte=now - WINDOW,
            placed_at__lte=now - PAST_MARGIN,
        )
        .exclude(pk__in=Subquery(sent.values("order_id")))
        .order_by("placed_at", "pk")
    )


def _client(account: AdAccount, http: dict[str, Any]) -> YandexMetricaClient:
    return YandexMetricaClient(ad_account_credentials(account), **http)


def _release(upload: MetricaUpload, order_ids: list[int] | None = None) -> None:
    """Give orders back (a refused upload, or people who dropped out before the send)."""
    claims = MetricaUploadOrder.objects.for_client(upload.client_id).filter(upload=upload)
    if order_ids is not None:
        claims = claims.filter(order_id__in=order_ids)
    claims.delete()


def _save(upload: MetricaUpload, **fields: Any) -> None:
    for key, value in fields.items():
        setattr(upload, key, value)
    upload.save(update_fields=list(fields))


def _send(upload: MetricaUpload, metrica: YandexMetricaClient, now: dt.datetime) -> None:
    """Send a PENDING upload (first time, or again after the platform was unavailable or the
    reply was lost: then it is looked up by its comment first)."""
    account = upload.account
    found = metrica.uploading_by_comment(upload.counter, upload.comment) if upload.error else None
    if found is not None:
        _adopt(upload, found, now)
        return
    claims = MetricaUploadOrder.objects.for_client(upload.client_id).filter(upload=upload)
    orders = list(
        Order.objects.for_client(upload.client_id).filter(
            pk__in=Subquery(claims.values("order_id"))
        )
    )
    sendable, skipped = _classify(account, orders)
    dropped = [o.pk for o in orders if o.pk not in {order.pk for order, _v in sendable}]
    if dropped:
        _release(upload, dropped)
        merged = {k: upload.skipped.get(k, 0) + v for k, v in skipped.items()}
        _save(upload, skipped=merged)
    if not sendable:
        _save(
            upload,
            status=MetricaUpload.Status.FAILED,
            error=_("Не осталось покупок для отправки."),
            finished_at=now,
        )
        return
    content = conversions_csv(
        [
            OfflineConversion(
                visitor_id=visitor,
                target=account.conversion_target,
                at=order.placed_at,
                price=order.amount,
                currency=CURRENCY,
            )
            for order, visitor in sendable
        ],
        client_id_type=upload.client_id_type,
    )
    revenue = sum((order.amount for order, _v in sendable), Decimal(0))
    _save(upload, rows=len(sendable), revenue=revenue)
    try:
        reply = metrica.upload(
            upload.counter, content, client_id_type=upload.client_id_type, comment=upload.comment
        )
    except (OutcomeUnknown, PlatformUnavailable) as exc:
        # Maybe done, maybe not: the next run looks it up by comment before sending again.
        _save(upload, error=exc.message[:2000], checked_at=now)
        return
    except PlatformError as exc:
        _release(upload)
        _save(
            upload,
            status=MetricaUpload.Status.FAILED,
            error=exc.message[:2000],
            finished_at=now,
        )
        return
    _adopt(upload, reply, now)


def _adopt(upload: MetricaUpload, reply: dict[str, Any], now: dt.datetime) -> None:
    status = str(reply.get("status") or MetricaUpload.Status.UPLOADED)
    if status not in MetricaUpload.Status.values:
        status = MetricaUpload.Status.UPLOADED
    quantity = reply.get("line_quantity")
    _save(
        upload,
        status=status,
        remote_id=str(reply.get("id") or ""),
        line_quantity=quantity if isinstance(quantity, int) and quantity >= 0 else None,
        error="",
        checked_at=now,
        finished_at=now if status in FINAL_STATUSES else None,
    )


def metrica_conversions_upload(
    *, account: AdAccount, now: dt.datetime | None = None, **http: Any
) -> dict[str, Any]:
    """The daily upload of one counter: pending uploads sent again first, then one new upload
    of the purchases not yet sent. Returns what was done (``uploads``, ``rows``, ``skipped``)."""
    now = now or timezone.now()
    if account.provider != AdAccount.Provider.METRICA:
        raise ValueError("not a Metrica account")
    if not account.conversion_target:
        raise ValueError(_("Не задана цель (Target) офлайн-конверсий."))
    metrica = _client(account, http)
    try:
        for upload in MetricaUpload.objects.for_client(account.client_id).filter(
            account=account, status=MetricaUpload.Status.PENDING
        ):
            _send(upload, metrica, now)
        orders = _eligible_orders(account, now)
        sendable, skipped = _classify(account, orders)
        if not sendable:
            return {"uploads": [], "rows": 0, "skipped": skipped}
        with transaction.atomic():
            upload = MetricaUpload.objects.create(
                client_id=account.client_id,
                account=account,
                counter=account.remote_id,
                client_id_type=account.client_id_type,
                comment=f"cvm-{account.pk}-{uuid.uuid4().hex[:16]}",
                skipped=skipped,
            )
            MetricaUploadOrder.objects.for_client(account.client_id).bulk_create(
                [
                    MetricaUploadOrder(
                        client_id=account.client_id, upload=upload, account=account, order=order
                    )
                    for order, _visitor in sendable
                ]
            )
        _send(upload, metrica, now)
        return {
            "uploads": [upload.pk],
            "rows": upload.rows,
            "status": upload.status,
            "skipped": upload.skipped,
            "upload_error": upload.error,
        }
    finally:
        metrica.close()


def metrica_uploads_poll(*, account: AdAccount, now: dt.datetime | None = None, **http: Any) -> int:
    """Read Metrica's status of the account's uploads in processing; returns how many are
    final now. A failure to read is logged and left for the next poll."""
    now = now or timezone.now()
    waiting = list(
        MetricaUpload.objects.for_client(account.client_id).filter(
            account=account, status=MetricaUpload.Status.UPLOADED
        )
    )
    if not waiting:
        return 0
    try:
        metrica = _client(account, http)
    except (CredentialsUnreadable, ValueError) as exc:
        logger.warning("Metrica account %s cannot be polled: %s", account.pk, exc)
        return 0
    finished = 0
    try:
        for upload in waiting:
            try:
                reply = metrica.uploading(upload.counter, upload.remote_id)
            except PlatformError as exc:
                logger.warning("status of Metrica upload %s: %s", upload.pk, exc.message)
                _save(upload, checked_at=now, error=exc.message[:2000])
                continue
            _adopt(upload, reply, now)
            finished += upload.status in FINAL_STATUSES
    finally:
        metrica.close()
    return finished


def metrica_accounts_polling() -> list[int]:
    """Ids of the accounts with uploads Metrica is still processing."""
    return list(
        MetricaUpload.objects.unscoped()
        .filter(status=MetricaUpload.Status.UPLOADED, account__is_active=True)
        .values_list("account_id", flat=True)
        .distinct()
        .order_by("account_id")
    )
