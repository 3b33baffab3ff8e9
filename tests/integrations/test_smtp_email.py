"""The baseline email client over Django's SMTP backend, against a real SMTP server (aiosmtpd
on loopback): multipart text + HTML, headers passed through, a Message-ID fixed by the outbox
key, per-recipient refusals that fail only their message, an unreachable relay raised."""

from __future__ import annotations

import pytest

from integrations.http import PlatformUnavailable
from integrations.messaging import OutgoingMessage
from integrations.smtp_email import SmtpEmailClient, message_id
from tests.stubs.smtp_sink import SmtpSink, free_port

UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://cvm.example.ru/u/abc>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def mail(key: str, to: str, **extra) -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        to=to,
        subject=extra.pop("subject", "Добро пожаловать"),
        body=extra.pop("body", "<p>Здравствуйте, <b>Анна</b>!</p>"),
        text=extra.pop("text", "Здравствуйте, Анна!"),
        **extra,
    )


def test_a_message_arrives_multipart_with_its_headers_and_a_fixed_message_id(smtp_sink):
    client = SmtpEmailClient(from_email="shop@example.ru", from_name="Магазин")
    results = client.send_batch([mail("42", "anna@example.com", headers=UNSUBSCRIBE)])

    assert [r.status for r in results] == ["accepted"]
    assert results[0].provider_id == message_id("42", "shop@example.ru")
    assert message_id("42", "shop@example.ru") == message_id("42", "shop@example.ru")
    assert message_id("42", "shop@example.ru") != message_id("43", "shop@example.ru")
    [received] = smtp_sink.messages
    assert received["Message-ID"] == message_id("42", "shop@example.ru")
    assert received["Message-ID"].endswith("@example.ru>")
    assert received["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Subject"] == "Добро пожаловать"
    assert "Магазин" in received["From"]
    assert "shop@example.ru" in received["From"]
    assert received.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in received.iter_parts()}
    assert parts["text/plain"].strip() == "Здравствуйте, Анна!"
    assert "<b>Анна</b>" in parts["text/html"]
    assert smtp_sink.envelopes[0]["to"] == ["anna@example.com"]


def test_a_batch_uses_one_connection_and_the_messages_own_sender(smtp_sink, monkeypatch):
    opened = []
    from django.core.mail.backends.smtp import EmailBackend

    original = EmailBackend.open

    def open_(self):
        new = original(self)
        if new:  # True when a connection was made (False: already open)
            opened.append(1)
        return new

    monkeypatch.setattr(EmailBackend, "open", open_)
    client = SmtpEmailClient(from_email="shop@example.ru")
    batch = [mail(str(i), f"user{i}@example.com") for i in range(5)]
    batch.append(mail("own", "x@example.com", from_email="news@example.ru"))
    results = client.send_batch(batch)
    assert {r.status for r in results} == {"accepted"}
    assert len(smtp_sink.messages) == 6
    assert len(opened) == 1
    assert smtp_sink.envelopes[-1]["from"] == "news@example.ru"


def test_a_refused_recipient_fails_only_its_message(smtp_sink):
    client = SmtpEmailClient(from_email="shop@example.ru")
    results = {
        r.key: r
        for r in client.send_batch(
            [
                mail("1", "a@example.com"),
                mail("2", "ghost@refused.example"),
                mail("3", "b@busy.example"),
                mail("4", "c@example.com"),
            ]
        )
    }
    assert results["1"].status == results["4"].status == "accepted"
    assert results["2"].status == "failed"
    assert results["2"].gone
    assert "550" in results["2"].error
    assert "No such user" in results["2"].error
    assert results["3"].status == "retry"  # 451: try later
    assert not results["3"].gone
    assert [e["to"] for e in smtp_sink.envelopes] == [["a@example.com"], ["c@example.com"]]


def test_a_header_injection_fails_that_message_only(smtp_sink):
    client = SmtpEmailClient(from_email="shop@example.ru")
    results = client.send_batch(
        [mail("1", "a@example.com", subject="Привет\nBcc: all@example.com"), mail("2", "b@x.ru")]
    )
    assert [r.status for r in results] == ["failed", "accepted"]
    assert len(smtp_sink.messages) == 1


def test_an_unreachable_relay_is_unavailable(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_TIMEOUT = 2
    client = SmtpEmailClient(from_email="shop@example.ru")
    with pytest.raises(PlatformUnavailable):
        client.send_batch([mail("1", "a@example.com")])


def test_the_sink_writes_eml_files_for_the_demo(tmp_path, settings):
    with SmtpSink(folder=tmp_path / "mail") as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        SmtpEmailClient(from_email="shop@example.ru").send_batch([mail("1", "a@example.com")])
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 1
    assert b"Message-ID: " + message_id("1", "shop@example.ru").encode() in files[0].read_bytes()


def test_a_connection_lost_during_a_message_makes_it_unknown_and_the_rest_go_on(
    smtp_sink, monkeypatch
):
    """The relay may have taken the message before the connection broke: it is never sent
    again; the next messages go over a new connection."""
    import smtplib

    from integrations.messaging import BatchOutcomeUnknown

    original = smtplib.SMTP.sendmail

    def sendmail(self, from_addr, to_addrs, msg, *args, **kwargs):
        if to_addrs == ["lost@example.com"]:
            original(self, from_addr, to_addrs, msg, *args, **kwargs)  # taken by the relay...
            self.close()
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")  # ...no reply
        return original(self, from_addr, to_addrs, msg, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "sendmail", sendmail)
    client = SmtpEmailClient(from_email="shop@example.ru")
    with pytest.raises(BatchOutcomeUnknown) as caught:
        client.send_batch(
            [mail("1", "a@example.com"), mail("2", "lost@example.com"), mail("3", "c@example.com")]
        )
    assert caught.value.unknown_keys == ["2"]
    assert {r.key: r.status for r in caught.value.results} == {"1": "accepted", "3": "accepted"}
    assert [e["to"] for e in smtp_sink.envelopes] == [
        ["a@example.com"],
        ["lost@example.com"],
        ["c@example.com"],
    ]


def test_every_provider_is_built_through_the_one_registry(settings):
    from integrations.channels import PROVIDERS, channel_client

    client = channel_client("smtp", {}, from_email="a@b.ru", timeout=5, max_attempts=3)
    assert isinstance(client, SmtpEmailClient)
    assert client.timeout == 5
    assert {p.channel for p in PROVIDERS.values()} == {"email", "sms", "push"}
    sms = channel_client("smsru", {"api_id": "k"}, sender="SHOP", from_email="ignored@b.ru")
    assert sms.sender == "SHOP"
    assert sms.channel == "sms"
    with pytest.raises(ValueError, match="api_id"):
        channel_client("smsru", {})
    with pytest.raises(ValueError, match="неизвестный"):
        channel_client("telegraph", {})
