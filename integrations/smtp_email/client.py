"""Email through Django's email backend: the SMTP relay of ``EMAIL_URL`` (config/settings.py
reads it into the ``EMAIL_*`` settings), for every client company without an email provider of
its own. Tests and ``make run`` point it at a local SMTP server (aiosmtpd).
"""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Sequence
from email.utils import formataddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.html import strip_tags

from ..http import OutcomeUnknown, PlatformError, PlatformUnavailable
from ..messaging import OutgoingMessage, SendResult, send_each

# Codes at RCPT that say the mailbox itself does not exist (a hard bounce): stop the person.
GONE_CODES = frozenset({550, 551, 553})


def message_id(key: str, from_email: str = "") -> str:
    """The Message-ID of outbox message ``key``: the same for every attempt, so a relay or a
    mailbox that deduplicates by Message-ID sees one message, and a bounce or reply names it."""
    domain = from_email.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<cvm.{digest}@{domain}>"


def _smtp_text(error: Any) -> str:
    if isinstance(error, bytes):
        return error.decode("utf-8", "replace")
    return str(error)


class SmtpEmailClient:
    """Email over the deployment's SMTP relay (``EMAIL_URL`` → ``EMAIL_*`` settings), one
    connection per batch, each message multipart/alternative (text + HTML).

    ``credentials`` has no keys: the relay is deployment configuration, never a client's data
    (a host of the client's choosing would let it point the worker anywhere). ``from_email``/
    ``from_name``: the sender, unless a message gives its own (``DEFAULT_FROM_EMAIL`` if
    neither does). A message's ``headers`` are passed through (List-Unsubscribe,
    List-Unsubscribe-Post); its Message-ID is :func:`message_id` of its key unless the headers
    give one. ``connection``: another Django email backend instance (tests); ``timeout``: seconds
    per SMTP operation (default ``EMAIL_TIMEOUT``); the other HTTP options of the clients
    (``max_attempts``...) are accepted and ignored.

    Results: a recipient refused at RCPT fails that message with the server's words (5xx;
    550/551/553 with ``gone=True``) or is ``retry`` (4xx); a message refused at DATA likewise.
    A relay that cannot be reached raises :class:`PlatformUnavailable` (nothing was sent).

    ``idempotent = False``: SMTP has no idempotency key (the fixed Message-ID helps mailboxes
    that deduplicate, but a relay delivers twice what it is given twice), so a resend is never
    blind: ``retry`` only for what the relay refused before taking it (a 4xx at RCPT or DATA,
    or a message not tried after the connection broke); a connection lost while a message was
    being handed over makes that message unknown (:class:`~integrations.messaging.
    BatchOutcomeUnknown`), never sent again."""

    channel = "email"
    max_batch = 100
    idempotent = False

    def __init__(
        self,
        credentials: dict[str, Any] | None = None,
        *,
        from_email: str = "",
        from_name: str = "",
        connection: Any = None,
        timeout: float | None = None,
        **_http_options: Any,
    ) -> None:
        self.from_email = from_email
        self.from_name = from_name
        self.connection = connection
        self.timeout = timeout
        self._open = False

    def close(self) -> None:
        if self.connection is not None and self._open:
            try:
                self.connection.close()
            except (OSError, smtplib.SMTPException):
                pass
        self._open = False

    def build(self, message: OutgoingMessage) -> EmailMultiAlternatives:
        from_email = message.from_email or self.from_email or settings.DEFAULT_FROM_EMAIL
        from_name = message.from_name or self.from_name
        headers = dict(message.headers)
        if not any(name.lower() == "message-id" for name in headers):
            headers["Message-ID"] = message_id(message.key, from_email)
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text or strip_tags(message.body),
            from_email=formataddr((from_name, from_email)) if from_name else from_email,
            to=[message.to],
            headers=headers,
        )
        if message.body:
            email.attach_alternative(message.body, "text/html")
        return email

    def _ensure_open(self) -> None:
        if self._open:
            return
        if self.connection is None:
            options = {"timeout": self.timeout} if self.timeout is not None else {}
            self.connection = get_connection(fail_silently=False, **options)
        try:
            self.connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            raise PlatformUnavailable(f"почтовый сервер недоступен: {exc}") from exc
        self._open = True

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        try:
            return send_each(messages, self._send_one)
        finally:
            self.close()

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        try:
            email = self.build(message)
            email.message()  # header injection and bad addresses fail here, before sending
        except ValueError as exc:
            return SendResult(key=message.key, status="failed", error=str(exc)[:200])
        self._ensure_open()
        try:
            self.connection.send_messages([email])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b""))
            error = f"{code} {_smtp_text(text)}".strip()
            if 400 <= code < 500:
                return SendResult(key=message.key, status="retry", error=error)
            return SendResult(
                key=message.key, status="failed", error=error, gone=code in GONE_CODES
            )
        except smtplib.SMTPSenderRefused as exc:
            raise PlatformError(
                f"отправитель отклонён: {exc.smtp_code} {_smtp_text(exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPDataError as exc:
            error = f"{exc.smtp_code} {_smtp_text(exc.smtp_error)}"
            status = "retry" if 400 <= exc.smtp_code < 500 else "failed"
            return SendResult(key=message.key, status=status, error=error)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            # It may have broken after the relay took the message: unknown, never resent. The
            # next message of the batch goes over a new connection.
            self.close()
            raise OutcomeUnknown(f"соединение с почтовым сервером прервано: {exc}") from exc
        except smtplib.SMTPException as exc:
            return SendResult(key=message.key, status="failed", error=str(exc)[:200])
        return SendResult(
            key=message.key, status="accepted", provider_id=email.extra_headers["Message-ID"]
        )
