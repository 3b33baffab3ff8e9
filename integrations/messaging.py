"""The one shape every owned-channel client (email, SMS, push) takes and gives back, so the
campaigns dispatcher sends through any provider the same way.

A client takes a batch of :class:`OutgoingMessage` and answers one :class:`SendResult` per
message, in any order, keyed by ``OutgoingMessage.key`` (our outbox id). A problem with one
recipient (a bad number, a dead push token, a refused address) is that message's result, never
an exception: one bad recipient must not fail the others. Only a problem with the whole request
raises:

- :class:`~integrations.http.PlatformError` (4xx, the provider's own words): bad credentials, no
  funds, sender not approved: every message of the batch fails with that text;
- :class:`~integrations.http.PlatformUnavailable` (429/5xx/timeouts after the retries): the
  batch is deferred and tried again later;
- :class:`~integrations.http.OutcomeUnknown`: the request may have been accepted (a timeout after
  the provider took it). The messages are **not** sent again blindly: a client whose provider
  takes an idempotency key (``idempotent = True``) may be called again with the same keys; for
  the others the messages stay "sending" and are resolved by a status query (``status``) or
  marked "outcome unknown" — never resent. A client that needs several requests for one batch
  raises :class:`BatchOutcomeUnknown` instead, which names the unknown messages and carries the
  definitive results of all the others (:func:`send_groups`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .http import OutcomeUnknown, PlatformError, PlatformUnavailable

logger = logging.getLogger(__name__)

ResultStatus = Literal["accepted", "failed", "retry"]


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one address.

    ``to``: an email address, an E.164 phone (``+79251234567``), a RuStore push token, or a web
    push subscription as JSON text (``{"endpoint", "keys": {"p256dh", "auth"}}``).
    ``subject`` is the email subject or the push title; ``body`` the HTML of an email or the text
    of an SMS or push; ``text`` the plain-text part of an email. ``headers`` are extra email
    headers (List-Unsubscribe, Message-ID); ``data`` the push payload's data (a link)."""

    key: str
    to: str
    body: str
    subject: str = ""
    text: str = ""
    from_email: str = ""
    from_name: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    """What the provider said of one message.

    ``accepted``: taken for delivery (``provider_id`` its id there, when it gives one);
    ``failed``: refused for good, ``error`` in the provider's words; ``gone`` when the address
    itself is dead (unknown push token, subscription 404/410, hard bounce): the person is stopped
    on that channel; ``retry``: refused for now (rate limit, temporarily unavailable)."""

    key: str
    status: ResultStatus
    provider_id: str = ""
    error: str = ""
    gone: bool = False


class ChannelClient(Protocol):
    """A provider's client for one client company's credentials."""

    channel: str  # "email", "sms" or "push"
    max_batch: int  # messages per send_batch call (the provider's limit per request)
    idempotent: bool  # may a batch be sent again with the same keys without a second delivery?

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]: ...

    def close(self) -> None: ...


class BatchOutcomeUnknown(OutcomeUnknown):
    """:class:`~integrations.http.OutcomeUnknown` of a batch sent one request per message (or
    per group): only the messages in ``unknown_keys`` may or may not have been taken; every
    other message of the batch has its definitive result in ``results`` (accepted, failed, or
    retry when it was not sent at all). A dispatcher that reads only the base class treats the
    whole batch as unknown: it loses information but never sends anything twice."""

    def __init__(
        self, message: str, *, results: Sequence[SendResult], unknown_keys: Sequence[str]
    ) -> None:
        super().__init__(message)
        self.results = list(results)
        self.unknown_keys = list(unknown_keys)


def send_groups(
    groups: Sequence[Sequence[OutgoingMessage]],
    send_group: Callable[[Sequence[OutgoingMessage]], list[SendResult]],
) -> list[SendResult]:
    """Send a batch one request per group of messages (one message, or the numbers of one text)
    with the same rules for every client that needs several requests for a batch.

    ``send_group`` returns the group's results and raises the ``integrations.http`` errors of
    its request. A request-level :class:`PlatformError` (bad credentials, no funds) or
    :class:`PlatformUnavailable` is raised as is while nothing of the batch has been sent; once
    something has, raising would make the dispatcher send those again, so the remaining
    messages become results instead (``failed`` with the provider's words, or ``retry``: not
    sent). An :class:`OutcomeUnknown` marks that group's messages unknown and the other groups
    are still sent; at the end :class:`BatchOutcomeUnknown` carries every definitive result."""
    results: list[SendResult] = []
    unknown: list[str] = []
    last_unknown = ""
    for index, group in enumerate(groups):
        try:
            results.extend(send_group(group))
        except OutcomeUnknown as exc:
            unknown.extend(m.key for m in group)
            last_unknown = exc.message
        except PlatformUnavailable as exc:
            if not results and not unknown:
                raise
            logger.info("provider unavailable mid-batch: %s", exc.message)
            results.extend(
                SendResult(key=m.key, status="retry", error=exc.message)
                for rest in groups[index:]
                for m in rest
            )
            break
        except PlatformError as exc:
            if not results and not unknown:
                raise
            results.extend(
                SendResult(key=m.key, status="failed", error=exc.message)
                for rest in groups[index:]
                for m in rest
            )
            break
    if unknown:
        total = sum(len(group) for group in groups)
        raise BatchOutcomeUnknown(
            f"исход неизвестен для {len(unknown)} из {total}: {last_unknown}",
            results=results,
            unknown_keys=unknown,
        )
    return results


def send_each(
    messages: Sequence[OutgoingMessage],
    send_one: Callable[[OutgoingMessage], SendResult],
) -> list[SendResult]:
    """:func:`send_groups` with one request per message."""
    return send_groups([[message] for message in messages], lambda group: [send_one(group[0])])


def status_summary(results: Sequence[SendResult]) -> dict[str, Any]:
    """Counts by status, for logs and the command line."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
