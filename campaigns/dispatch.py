"""Sending the outbox: claim, check again, cap, respect quiet hours, send in batches, record.

A worker claims due messages of one client and channel with ``FOR UPDATE SKIP LOCKED`` (two
workers never take the same row), checks consent and channel stops again (a withdrawal between
queueing and sending wins), applies the frequency caps (marketing only, across chains, per
channel and overall, rolling 24 h and 7 days) and the recipient's quiet hours (deferred to the
window's end), marks the batch ``sending`` and commits, then calls the provider once for the
batch and records each message's result.

**Never a second send.** The claim commits ``sending`` before the provider is called. If the
worker dies after the provider accepted and before our commit, the message is still
``sending``; :func:`outbox_recover` finds it after :data:`SENDING_STALE` and

- with a provider that takes an idempotency key (``ChannelClient.idempotent``: the key is our
  message id), puts it back in the queue: a repeat with the same key is not a second delivery;
- otherwise marks it failed with ``outcome_unknown``: we cannot know, so we never resend blindly
  (a person who gets two copies of a promo SMS is worse off than one who gets none; staff can
  resend by hand from the admin after checking the provider's log).

A timeout of the send itself (``OutcomeUnknown``) is handled the same way at once. 429/5xx and
per-message "retry" results go back to the queue with backoff; a 4xx fails the batch's messages
with the provider's words; a per-recipient refusal fails only that message, and a dead address
(``gone``) stops the person on the channel.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agency.errors import ServiceError
from agency.rows import rows_update
from clients.models import Customer
from consent.purposes import CHANNEL_PURPOSE
from consent.transfers import transfer_check
from consent.unsubscribe import unsubscribe_headers
from integrations.http import OutcomeUnknown, PlatformError, PlatformUnavailable
from integrations.messaging import BatchOutcomeUnknown, OutgoingMessage, SendResult

from .channels import ChannelSender, channel_sender_for
from .engine import campaign_settings_for, suppression_reasons
from .models import CampaignSettings, ChannelStop, Message, PushDevice
from .templating import html_to_text

logger = logging.getLogger(__name__)

SENDING_STALE = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 6
BACKOFF = (dt.timedelta(minutes=1), dt.timedelta(minutes=5), dt.timedelta(minutes=15))
SENT_STATES = (
    Message.State.SENDING,
    Message.State.SENT,
    Message.State.DELIVERED,
    Message.State.OPENED,
    Message.State.CLICKED,
)
DUE_STATES = (Message.State.QUEUED, Message.State.DEFERRED)

Progress = Callable[[str, int], None]


def backoff(attempts: int) -> dt.timedelta:
    return BACKOFF[min(attempts, len(BACKOFF)) - 1] if attempts else BACKOFF[0]


# --------------------------------------------------------------------------------------------
# Quiet hours and caps


def recipient_zone(customer: Customer, client_zone: str) -> zoneinfo.ZoneInfo:
    """The customer's own zone (``attributes["time_zone"]``, IANA) or else the client's."""
    name = ""
    attributes = customer.attributes if isinstance(customer.attributes, dict) else {}
    if isinstance(attributes.get("time_zone"), str):
        name = attributes["time_zone"]
    for candidate in (name, client_zone, "Europe/Moscow"):
        try:
            return zoneinfo.ZoneInfo(candidate)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return zoneinfo.ZoneInfo("Europe/Moscow")


def quiet_until(now: dt.datetime, zone: zoneinfo.ZoneInfo, start: dt.time, end: dt.time):
    """The end of the quiet window if ``now`` lies inside it (in ``zone``), else None.
    A window such as 21:00-09:00 wraps midnight."""
    if start == end:
        return None
    local = now.astimezone(zone)
    moment = local.time()
    wraps = start > end
    inside = (moment >= start or moment < end) if wraps else (start <= moment < end)
    if not inside:
        return None
    day = local.date()
    if wraps and moment >= start:
        day = day + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=zone).astimezone(dt.UTC)


def _sent_history(client_id: int, customer_ids: list[int], now: dt.datetime) -> dict:
    """Per customer, the claim times of marketing messages in the last 7 days, by channel."""
    history: dict[int, list[tuple[str, dt.datetime]]] = defaultdict(list)
    rows = (
        Message.objects.for_client(client_id)
        .filter(
            customer_id__in=customer_ids,
            sending_at__gte=now - dt.timedelta(days=7),
            state__in=SENT_STATES,
            transactional=False,
        )
        .values_list("customer_id", "channel", "sending_at")
    )
    for customer_id, channel, at in rows:
        history[customer_id].append((channel, at))
    return history


def cap_until(
    history: list[tuple[str, dt.datetime]],
    channel: str,
    caps: CampaignSettings,
    now: dt.datetime,
) -> dt.datetime | None:
    """When the next message on ``channel`` fits every cap again, or None if it fits now."""
    later: list[dt.datetime] = []
    for scope in (channel, "total"):
        times = sorted(at for ch, at in history if scope == "total" or ch == scope)
        for period, length in (("day", dt.timedelta(days=1)), ("week", dt.timedelta(days=7))):
            cap = caps.cap(scope, period)
            if cap is None:
                continue
            inside = [at for at in times if at > now - length]
            if len(inside) >= cap:
                # Free again when the oldest message that still counts leaves the window.
                later.append(inside[len(inside) - cap] + length)
    return max(later) if later else None


# --------------------------------------------------------------------------------------------
# Dispatch


def _claim(
    client_id: int, channel: str, sender: ChannelSender, caps: CampaignSettings, now, report
) -> list[Message]:
    """Take one batch, apply the checks, mark what may go as sending; commit."""
    with transaction.atomic():
        batch = list(
            Message.objects.for_client(client_id)
            .filter(channel=channel, state__in=DUE_STATES, due_at__lte=now)
            .select_for_update(skip_locked=True)
            .order_by("priority", "due_at", "pk")[: sender.client.max_batch]
        )
        if not batch:
            return []
        customer_ids = list({m.customer_id for m in batch})
        reasons = suppression_reasons(client_id, channel, customer_ids)
        customers = {
            c.pk: c
            for c in Customer.objects.for_client(client_id)
            .filter(pk__in=customer_ids)
            .only("pk", "attributes", "erased_at")
        }
        history = _sent_history(client_id, customer_ids, now)
        client_zone = sender.client_zone
        claimed: list[Message] = []
        for message in batch:
            customer = customers.get(message.customer_id)
            reason = (
                _("данные удалены")
                if customer is None or customer.erased_at
                else reasons.get(message.customer_id)
            )
            if reason:
                message.state = Message.State.SUPPRESSED
                message.reason = reason[:500]
                message.finished_at = now
                _count(report, "suppressed")
                continue
            zone = recipient_zone(customer, client_zone)
            wait = quiet_until(now, zone, caps.quiet_start, caps.quiet_end)
            why = _("тихие часы получателя (%(zone)s)") % {"zone": zone.key}
            if wait is None and not message.transactional:
                wait = cap_until(history[message.customer_id], channel, caps, now)
                why = _("лимит сообщений на человека")
            if wait is not None:
                message.state = Message.State.DEFERRED
                message.due_at = wait
                message.reason = why
                _count(report, "deferred")
                continue
            message.state = Message.State.SENDING
            message.sending_at = now
            message.attempts += 1
            message.provider = sender.provider
            message.reason = ""
            history[message.customer_id].append((channel, now))
            claimed.append(message)
        rows_update(
            Message,
            client_id,
            batch,
            ["state", "reason", "finished_at", "due_at", "sending_at", "attempts", "provider"],
        )
    return claimed


def _outgoing(message: Message, sender: ChannelSender) -> OutgoingMessage:
    headers: dict[str, str] = {}
    if message.channel == "email" and not message.transactional:
        headers = unsubscribe_headers(
            customer=Customer(pk=message.customer_id, client_id=message.client_id),
            purpose_code=CHANNEL_PURPOSE[message.channel],
        )
    return OutgoingMessage(
        key=str(message.pk),
        to=message.address,
        subject=message.subject,
        body=message.body,
        text=html_to_text(message.body) if message.channel == "email" else "",
        from_email=sender.sender,
        from_name=sender.sender_name,
        headers=headers,
    )


def _apply_results(
    claimed: list[Message], results: list[SendResult], now: dt.datetime, report
) -> None:
    by_key = {result.key: result for result in results}
    stops: list[ChannelStop] = []
    gone_tokens: list[str] = []
    for message in claimed:
        result = by_key.get(str(message.pk))
        if result is None:
            # The client answered nothing for it: we cannot know, never resend.
            _unknown(message, now, report)
            continue
        if result.status == "accepted":
            message.state = Message.State.SENT
            message.sent_at = now
            message.provider_message_id = result.provider_id[:200]
            _count(report, "sent")
        elif result.status == "retry" and message.attempts < MAX_ATTEMPTS:
            message.state = Message.State.QUEUED
            message.due_at = now + backoff(message.attempts)
            message.reason = result.error[:500]
            _count(report, "retried")
        else:
            message.state = Message.State.FAILED
            message.reason = (result.error or _("провайдер не принял сообщение"))[:500]
            message.finished_at = now
            _count(report, "failed")
            if result.gone:
                stops.append(
                    ChannelStop(
                        client_id=message.client_id,
                        customer_id=message.customer_id,
                        channel=message.channel,
                        reason=ChannelStop.Reason.INVALID,
                        detail=message.reason,
                        message_id=message.pk,
                    )
                )
                if message.channel == "push":
                    gone_tokens.append(message.address)
    with transaction.atomic():
        rows_update(
            Message,
            claimed[0].client_id,
            claimed,
            [
                "state",
                "sent_at",
                "provider_message_id",
                "due_at",
                "reason",
                "finished_at",
                "outcome_unknown",
            ],
        )
        if gone_tokens:
            # A dead device stops that device; the person stays reachable on another one.
            PushDevice.objects.for_client(claimed[0].client_id).filter(
                token__in=gone_tokens
            ).update(gone_at=now)
            stops = [s for s in stops if s.channel != "push"]
        if stops:
            ChannelStop.objects.bulk_create(stops, ignore_conflicts=True)


def _unknown(message: Message, now: dt.datetime, report) -> None:
    message.state = Message.State.FAILED
    message.outcome_unknown = True
    message.reason = _(
        "Исход неизвестен: провайдер мог принять сообщение, но ответ не дошёл. "
        "Повторно не отправляется."
    )
    message.finished_at = now
    _count(report, "unknown")


def _batch_fail(claimed: list[Message], exc: Exception, now: dt.datetime, report) -> None:
    if isinstance(exc, BatchOutcomeUnknown):
        # Some requests of the batch answered: their results stand; only the rest is unknown
        # (no result for a message makes it unknown in _apply_results, never resent).
        known = [r for r in exc.results if r.key not in set(exc.unknown_keys)]
        _apply_results(claimed, known, now, report)
        return
    if isinstance(exc, OutcomeUnknown):
        results = []
        for message in claimed:
            _unknown(message, now, report)
    elif isinstance(exc, PlatformUnavailable):
        results = [SendResult(key=str(m.pk), status="retry", error=str(exc)) for m in claimed]
    else:
        message = getattr(exc, "message", "") or str(exc)
        results = [SendResult(key=str(m.pk), status="failed", error=message) for m in claimed]
    if results:
        _apply_results(claimed, results, now, report)
        return
    with transaction.atomic():
        rows_update(
            Message,
            claimed[0].client_id,
            claimed,
            ["state", "reason", "finished_at", "outcome_unknown"],
        )


def _count(report, key: str, n: int = 1) -> None:
    report.dispatch[key] = report.dispatch.get(key, 0) + n


def outbox_dispatch(
    client_id: int,
    now: dt.datetime | None,
    report,
    *,
    max_messages: int | None = None,
    progress: Progress | None = None,
) -> None:
    """Send what is due for one client, channel by channel, batch by batch."""
    caps = campaign_settings_for(client_id)
    channels = list(
        Message.objects.for_client(client_id)
        .filter(state__in=DUE_STATES, due_at__lte=now or timezone.now())
        .order_by()
        .values_list("channel", flat=True)
        .distinct()
    )
    sent_total = 0
    for channel in channels:
        try:
            sender = channel_sender_for(client_id, channel)
        except ServiceError as exc:  # no channel configured: the messages wait, with the reason
            _hold(client_id, channel, exc.message)
            continue
        try:
            # Web push is checked per endpoint (its vendor), not per channel: _webpush_transfers.
            if sender.provider != "webpush":
                transfer_check(recipient=sender.recipient, operation=f"campaigns:{channel}")
        except ServiceError as exc:  # the cross-border guard refused: wait, say why
            _hold(client_id, channel, exc.message)
            continue
        try:
            while max_messages is None or sent_total < max_messages:
                moment = now or timezone.now()
                claimed = _claim(client_id, channel, sender, caps, moment, report)
                if not claimed:
                    # Nothing more could be claimed (or all was deferred or suppressed).
                    if not _more_due(client_id, channel, moment):
                        break
                    continue
                if sender.provider == "webpush":
                    claimed = _webpush_transfers(client_id, claimed, moment, report)
                    if not claimed:
                        continue
                try:
                    results = sender.client.send_batch([_outgoing(m, sender) for m in claimed])
                except (PlatformError, OSError) as exc:
                    logger.warning("send batch of %s failed: %s", channel, exc)
                    _batch_fail(claimed, exc, moment, report)
                else:
                    _apply_results(claimed, results, moment, report)
                sent_total += len(claimed)
                if progress:
                    progress("dispatch", len(claimed))
        finally:
            sender.client.close()


def _webpush_transfers(
    client_id: int, claimed: list[Message], now: dt.datetime, report
) -> list[Message]:
    """A web push endpoint belongs to the browser's vendor, usually abroad: each message passes
    the cross-border guard for that vendor (a data recipient per push service host, with its
    country), and one whose vendor is unknown, or not notified to Roskomnadzor, is held back
    with the reason instead of being sent."""
    import json
    from urllib.parse import urlsplit

    from consent.models import DataRecipient
    from integrations.webpush import endpoint_country, is_local_test_endpoint

    allowed: list[Message] = []
    held: list[Message] = []
    for message in claimed:
        try:
            endpoint = json.loads(message.address)["endpoint"]
        except (ValueError, KeyError, TypeError):
            endpoint = ""
        host = (urlsplit(endpoint).hostname or "").lower()
        country = endpoint_country(endpoint)
        if not country and is_local_test_endpoint(endpoint):
            country = "RU"  # a push service on this very machine (tests, the demo)
        if not country:
            message.reason = _(
                "Страна push-сервиса %(host)s неизвестна: трансграничная передача не доказуема."
            ) % {"host": host or "?"}
            held.append(message)
            continue
        if country != "RU":
            recipient, _created = DataRecipient.objects.for_client(client_id).get_or_create(
                client_id=client_id,
                kind=DataRecipient.Kind.PUSH,
                name=f"Web push: {host}",
                defaults={"country": country},
            )
            try:
                transfer_check(recipient=recipient, operation=f"campaigns:webpush:{message.pk}")
            except ServiceError as exc:
                message.reason = str(exc.message)
                held.append(message)
                continue
        allowed.append(message)
    for message in held:
        message.state = Message.State.SUPPRESSED
        message.finished_at = now
        message.reason = message.reason[:500]
        _count(report, "suppressed")
    if held:
        rows_update(Message, client_id, held, ["state", "finished_at", "reason"])
    return allowed


def _more_due(client_id: int, channel: str, now: dt.datetime) -> bool:
    return (
        Message.objects.for_client(client_id)
        .filter(channel=channel, state__in=DUE_STATES, due_at__lte=now)
        .exists()
    )


def _hold(client_id: int, channel: str, reason: str) -> None:
    """The channel cannot send now (not configured, transfer refused): the messages wait an hour
    with the reason shown, instead of failing."""
    Message.objects.for_client(client_id).filter(
        channel=channel, state__in=DUE_STATES, due_at__lte=timezone.now()
    ).update(
        state=Message.State.DEFERRED,
        due_at=timezone.now() + dt.timedelta(hours=1),
        reason=reason[:500],
    )


def outbox_recover(client_id: int | None = None, now: dt.datetime | None = None) -> dict:
    """Messages left ``sending`` by a worker that died (see the module docstring)."""
    now = now or timezone.now()
    stale = Message.objects.unscoped().filter(
        state=Message.State.SENDING, sending_at__lt=now - SENDING_STALE
    )
    if client_id is not None:
        stale = stale.filter(client_id=client_id)
    requeued = unknown = 0
    for (cid, channel), ids in _group_ids(stale).items():
        try:
            idempotent = channel_sender_for(cid, channel).idempotent
        except Exception:  # noqa: BLE001 - unknown means never resend
            idempotent = False
        rows = Message.objects.for_client(cid).filter(pk__in=ids, state=Message.State.SENDING)
        if idempotent:
            requeued += rows.update(state=Message.State.QUEUED, due_at=now)
        else:
            unknown += rows.update(
                state=Message.State.FAILED,
                outcome_unknown=True,
                finished_at=now,
                reason=_(
                    "Исход неизвестен: отправка прервалась после передачи провайдеру. "
                    "Повторно не отправляется."
                ),
            )
    return {"requeued": requeued, "unknown": unknown}


def _group_ids(queryset) -> dict[tuple[int, str], list[int]]:
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for pk, client_id, channel in queryset.values_list("pk", "client_id", "channel"):
        groups[(client_id, channel)].append(pk)
    return groups
