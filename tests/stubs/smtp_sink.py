"""A real SMTP server on the loopback interface (aiosmtpd) that keeps what it receives: in
memory (``messages``, parsed ``email.message.EmailMessage`` objects, for tests) and, when
``folder`` is given, one ``.eml`` file per message (for the demo: ``make run`` writes them to
var/mail/).

Recipients at a domain in ``refuse_domains`` are refused at RCPT with 550 5.1.1 (a hard bounce),
at a domain in ``defer_domains`` with 451 4.3.0 (try later): what a relay answers for a dead or
a busy mailbox.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller

REFUSE_DOMAINS = frozenset({"refused.example"})
DEFER_DOMAINS = frozenset({"busy.example"})


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        domain = address.rpartition("@")[2].lower()
        if domain in self.sink.refuse_domains:
            return "550 5.1.1 No such user here"
        if domain in self.sink.defer_domains:
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.sink._receive(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Start with ``start()`` (or ``with``); ``host``/``port``, ``email_url`` for EMAIL_URL."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        folder: str | Path | None = None,
        refuse_domains: frozenset[str] | set[str] = REFUSE_DOMAINS,
        defer_domains: frozenset[str] | set[str] = DEFER_DOMAINS,
        log_messages: bool = False,
        readers: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self.folder = Path(folder) if folder else None
        self.refuse_domains = set(refuse_domains)
        self.defer_domains = set(defer_domains)
        self.log_messages = log_messages
        self.readers = readers  # tests.stubs.readers.SimulatedReaders in the demo
        self.raw: list[bytes] = []  # parsed on demand (parsing each on arrival halves the rate)
        self._parsed: list[EmailMessage] = []
        self.envelopes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def email_url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> Self:
        if not self.port:
            self.port = free_port(self.host)
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        """What the sink received, parsed (``email.policy.default``), in order of arrival."""
        with self._lock:
            for content in self.raw[len(self._parsed) :]:
                self._parsed.append(email.message_from_bytes(content, policy=email.policy.default))
            return list(self._parsed)

    def _receive(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> None:
        with self._lock:
            self.raw.append(content)
            self.envelopes.append({"from": mail_from, "to": rcpt_tos})
            number = len(self.raw)
        if self.folder:
            (self.folder / f"{number:06d}.eml").write_bytes(content)
        if self.readers is not None or self.log_messages:
            message = email.message_from_bytes(content, policy=email.policy.default)
        if self.readers is not None:
            self.readers.on_email(message)
        if self.log_messages:
            print(
                f"[SmtpSink:{self.port}] {mail_from} -> {', '.join(rcpt_tos)}: "
                f"{message.get('Subject', '')}",
                flush=True,
            )

    def sent_to(self, address: str) -> list[EmailMessage]:
        messages = self.messages
        with self._lock:
            envelopes = list(self.envelopes)
        return [m for m, e in zip(messages, envelopes, strict=True) if address in e["to"]]

    def clear(self) -> None:
        with self._lock:
            self.raw.clear()
            self._parsed.clear()
            self.envelopes.clear()
