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
  marked "outcome unknown" — never resent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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


def status_summary(results: Sequence[SendResult]) -> dict[str, Any]:
    """Counts by status, for logs and the command line."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
