"""The owned-channel clients (integrations/unisender, sendsay, smsru, smsc, rustore, webpush)
against their loopback stubs: provider ids on success, one bad recipient never fails the
others, request-level refusals in the provider's words, 429/503 retried, a timeout on a send is
an unknown outcome that is never sent again, and 20 % injected faults over a few hundred
messages end with every message in a final state and none delivered twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from integrations import rustore, sendsay, smsc, smsru, unisender
from integrations.http import OutcomeUnknown, PlatformError, PlatformUnavailable
from integrations.messaging import BatchOutcomeUnknown, OutgoingMessage, SendResult
from integrations.rustore import RuStorePushClient
from integrations.sendsay import SendsayClient
from integrations.smsc import SmscClient
from integrations.smsru import SmsRuClient
from integrations.unisender import UniSenderClient
from integrations.webpush import WebPushClient
from tests.stubs.fixtures import FAST_HTTP
from tests.stubs.rustore import RuStoreStub
from tests.stubs.sendsay import SendsayStub
from tests.stubs.smsc import SmscStub
from tests.stubs.smsru import SmsRuStub
from tests.stubs.unisender import UniSenderStub
from tests.stubs.webpush import WebPushStub

NO_SLEEP = {"sleep": lambda _seconds: None}


@dataclass
class Provider:
    """How to drive one provider's client against its stub in the shared tests."""

    name: str
    stub: Callable[..., Any]
    client: Callable[[Any, dict[str, Any]], Any]
    message: Callable[[Any, int], OutgoingMessage]  # a valid message to a unique address
    bad: Callable[[Any, int], OutgoingMessage]  # a message the provider refuses per recipient
    bad_words: str  # in the refused message's error
    address: Callable[[OutgoingMessage], str]  # the address as the stub records it
    bad_credentials: Callable[[Any], dict[str, str]] | None = None
    auth_words: str = ""


def email(key: str, to: str) -> OutgoingMessage:
    return OutgoingMessage(
        key=key, to=to, subject=f"Тема {key}", body=f"<p>Письмо {key}</p>", text=f"Письмо {key}"
    )


def sms(key: str, phone: str, body: str = "") -> OutgoingMessage:
    return OutgoingMessage(key=key, to=phone, body=body or f"Код {key}")


def phone(i: int) -> str:
    return f"+7916{i:07d}"


def webpush_message(stub: WebPushStub, i: int) -> OutgoingMessage:
    return OutgoingMessage(
        key=f"w{i}",
        to=json.dumps(stub.subscribe()),
        subject="Скидка",
        body=f"Для вас {i}",
        data={"link": "https://shop.example.ru/"},
    )


PROVIDERS = [
    Provider(
        name="unisender",
        stub=lambda **kw: UniSenderStub(min_interval=0, **kw),
        client=lambda stub, http: UniSenderClient(
            stub.credentials,
            base_url=stub.base_url,
            from_email="shop@example.ru",
            from_name="Магазин",
            **http,
        ),
        message=lambda stub, i: email(f"u{i}", f"user{i}@example.ru"),
        bad=lambda stub, i: email(f"u{i}", "not-an-address"),
        bad_words="Неверный адрес",
        address=lambda m: m.to,
        bad_credentials=lambda stub: {"api_key": "wrong", "list_id": "1"},
        auth_words="Указан неверный ключ доступа к API",
    ),
    Provider(
        name="sendsay",
        stub=SendsayStub,
        client=lambda stub, http: SendsayClient(
            stub.credentials,
            base_url=stub.base_url,
            from_email="shop@example.ru",
            from_name="Магазин",
            **http,
        ),
        message=lambda stub, i: email(f"s{i}", f"user{i}@example.ru"),
        bad=lambda stub, i: email(f"s{i}", "not-an-address"),
        bad_words="error/email/invalid",
        address=lambda m: m.to,
        bad_credentials=lambda stub: {"account": "test-account", "api_key": "wrong"},
        auth_words="Неверный ключ API или аккаунт",
    ),
    Provider(
        name="smsru",
        stub=SmsRuStub,
        client=lambda stub, http: SmsRuClient(
            stub.credentials, base_url=stub.base_url, sender="CVM-DEMO", **http
        ),
        message=lambda stub, i: sms(f"r{i}", phone(i)),
        bad=lambda stub, i: sms(f"r{i}", "+7916123"),
        bad_words="неверный номер",
        address=lambda m: smsru.phone_digits(m.to),
        bad_credentials=lambda stub: {"api_id": "wrong"},
        auth_words="Неправильный api_id",
    ),
    Provider(
        name="smsc",
        stub=SmscStub,
        client=lambda stub, http: SmscClient(
            stub.credentials, base_url=stub.base_url, sender="CVM-DEMO", **http
        ),
        message=lambda stub, i: sms(f"c{i}", phone(i), "Акция"),
        bad=lambda stub, i: sms(f"c{i}", "+7916123", "Акция"),
        bad_words="неверный формат номера",
        address=lambda m: smsru.phone_digits(m.to),
        bad_credentials=lambda stub: {"login": "test-smsc", "password": "wrong"},
        auth_words="authorise error",
    ),
    Provider(
        name="rustore",
        stub=RuStoreStub,
        client=lambda stub, http: RuStorePushClient(
            stub.credentials, base_url=stub.base_url, **http
        ),
        message=lambda stub, i: OutgoingMessage(
            key=f"p{i}", to=f"device-token-{i:08d}", subject="Скидка", body=f"Для вас {i}"
        ),
        bad=lambda stub, i: OutgoingMessage(key=f"p{i}", to="short", subject="x", body="y"),
        bad_words="invalid token",
        address=lambda m: m.to,
        bad_credentials=lambda stub: {"project_id": "test-project", "service_token": "wrong"},
        auth_words="The service token has no access to this project",
    ),
    Provider(
        name="webpush",
        stub=WebPushStub,
        client=lambda stub, http: WebPushClient(stub.credentials, **http),
        message=webpush_message,
        bad=lambda stub, i: OutgoingMessage(
            key=f"w{i}",
            to=json.dumps({"endpoint": stub.base_url + "nobody", "keys": {}}),
            body="x",
        ),
        bad_words="подписка повреждена",
        address=lambda m: json.loads(m.to)["endpoint"],
    ),
]
BY_NAME = {p.name: p for p in PROVIDERS}


@pytest.fixture(autouse=True)
def _private_endpoints(settings):
    """The web push stub listens on loopback (the SSRF guard's own tests switch it back)."""
    settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = True


@pytest.fixture(params=[p.name for p in PROVIDERS])
def provider(request) -> Provider:
    return BY_NAME[request.param]


def by_key(results: list[SendResult]) -> dict[str, SendResult]:
    return {r.key: r for r in results}


# --------------------------------------------------------------------------------------------
# Success, per-recipient errors, request-level errors


def test_a_batch_is_accepted_with_the_providers_ids(provider):
    with provider.stub() as stub:
        client = provider.client(stub, {**FAST_HTTP, **NO_SLEEP})
        messages = [provider.message(stub, i) for i in range(5)]
        results = by_key(client.send_batch(messages))
        client.close()
    assert set(results) == {m.key for m in messages}
    assert {r.status for r in results.values()} == {"accepted"}
    recorded = stub.deliveries()
    for message in messages:
        assert recorded[provider.address(message)] == 1
    ids = {r.provider_id for r in results.values()}
    if provider.name != "rustore":  # RuStore answers {} on success: no id
        assert "" not in ids
        assert len(ids) == 5
    assert client.channel in ("email", "sms", "push")
    assert client.max_batch >= 1
    assert client.idempotent is False


def test_one_bad_recipient_does_not_fail_the_others(provider):
    with provider.stub() as stub:
        client = provider.client(stub, {**FAST_HTTP, **NO_SLEEP})
        messages = [provider.message(stub, 0), provider.bad(stub, 1), provider.message(stub, 2)]
        results = by_key(client.send_batch(messages))
        client.close()
    assert results[messages[0].key].status == "accepted"
    assert results[messages[2].key].status == "accepted"
    refused = results[messages[1].key]
    assert refused.status == "failed"
    assert provider.bad_words.lower() in refused.error.lower()
    assert len(stub.sent) == 2


@pytest.mark.parametrize("name", [p.name for p in PROVIDERS if p.bad_credentials])
def test_bad_credentials_raise_with_the_providers_words(name):
    provider = BY_NAME[name]
    with provider.stub() as stub:
        client = provider.client(_Credentials(stub, provider.bad_credentials(stub)), FAST_HTTP)
        with pytest.raises(PlatformError) as caught:
            client.send_batch([provider.message(stub, i) for i in range(3)])
        client.close()
    assert not isinstance(caught.value, PlatformUnavailable | OutcomeUnknown)
    assert provider.auth_words in caught.value.message
    assert stub.sent == []


class _Credentials:
    """The stub with other credentials (the client factories read ``stub.credentials``)."""

    def __init__(self, stub: Any, credentials: dict[str, str]) -> None:
        self.credentials = credentials
        self.base_url = stub.base_url


def test_a_request_level_refusal_after_some_sends_fails_the_rest_instead_of_raising():
    """Once part of a batch went out, raising would make the dispatcher send it again."""
    with UniSenderStub(min_interval=0) as stub:
        client = UniSenderClient(
            stub.credentials, base_url=stub.base_url, from_email="a@example.ru", **FAST_HTTP
        )
        calls = []

        def run_out_of_money(_seconds: float) -> None:
            calls.append(1)

        messages = [email(f"m{i}", f"user{i}@example.ru") for i in range(4)]
        original = client._send_one

        def send_one(message):
            if message.key == "m2":
                stub.broke = True
            return original(message)

        client._send_one = send_one
        results = by_key(client.send_batch(messages))
    assert [results[f"m{i}"].status for i in range(4)] == [
        "accepted",
        "accepted",
        "failed",
        "failed",
    ]
    assert "Недостаточно средств" in results["m3"].error
    assert len(stub.sent) == 2


# --------------------------------------------------------------------------------------------
# Faults: 429/503 retried, timeouts never resent


@pytest.mark.parametrize("kind", ["429", "503"])
def test_429_and_503_are_retried(provider, kind):
    with provider.stub(fault_rate=1.0, fault_kinds=(kind,)) as stub:
        pauses: list[float] = []

        def sleep(seconds: float) -> None:
            pauses.append(seconds)
            stub.fault_rate = 0.0  # the provider recovers during the pause

        client = provider.client(stub, {**FAST_HTTP, "sleep": sleep})
        message = provider.message(stub, 0)
        results = client.send_batch([message])
        client.close()
    assert [r.status for r in results] == ["accepted"]
    assert len(pauses) == 1
    assert [r["status"] for r in stub.requests] == [
        int(kind),
        200 if provider.name != "webpush" else 201,
    ]
    assert stub.deliveries()[provider.address(message)] == 1


def test_a_timeout_on_a_send_is_an_unknown_outcome_never_sent_again(provider):
    options = {"fault_rate": 1.0, "fault_kinds": ("timeout",), "timeout_processes": 1.0}
    with provider.stub(timeout_sleep=1.0, **options) as stub:
        client = provider.client(stub, {**FAST_HTTP, "timeout": 0.3, **NO_SLEEP})
        message = provider.message(stub, 0)
        with pytest.raises(OutcomeUnknown) as caught:
            client.send_batch([message])
        client.close()
        stub.fault_rate = 0.0
    assert isinstance(caught.value, BatchOutcomeUnknown)
    assert caught.value.unknown_keys == [message.key]
    assert len(stub.requests) == 1  # no second attempt
    assert stub.deliveries()[provider.address(message)] == 1  # the provider did take it


def test_an_unavailable_provider_raises_when_nothing_was_sent():
    with SmsRuStub(fault_rate=1.0, fault_kinds=("503",)) as stub:
        client = SmsRuClient(
            stub.credentials, base_url=stub.base_url, **{**FAST_HTTP, "max_attempts": 3, **NO_SLEEP}
        )
        with pytest.raises(PlatformUnavailable):
            client.send_batch([sms("a", phone(1))])
    assert stub.sent == []
    assert len(stub.requests) == 3


def drain(client, messages: list[OutgoingMessage], rounds: int = 40) -> dict[str, str]:
    """What a dispatcher does: send in batches, keep accepted/failed, send "retry" again later,
    never send an unknown one again. Batches of at most 20, so that a provider taking 100
    numbers a request still makes enough requests for the faults to hit."""
    state = {m.key: "queued" for m in messages}
    pending = list(messages)
    for _ in range(rounds):
        if not pending:
            break
        later: list[OutgoingMessage] = []
        size = min(client.max_batch, 20)
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            index = {m.key: m for m in batch}
            try:
                results = client.send_batch(batch)
            except BatchOutcomeUnknown as exc:
                results = exc.results
                for key in exc.unknown_keys:
                    state[key] = "unknown"
            except OutcomeUnknown:
                results = []
                for message in batch:
                    state[message.key] = "unknown"
            except PlatformUnavailable:
                later.extend(batch)
                continue
            for result in results:
                if result.status == "retry":
                    later.append(index[result.key])
                else:
                    state[result.key] = result.status
        pending = later
    return state


def test_twenty_percent_faults_end_with_every_message_final_and_none_twice(provider):
    options = {"fault_rate": 0.2, "fault_seed": 12, "timeout_sleep": 0.6}
    with provider.stub(**options) as stub:
        client = provider.client(stub, {**FAST_HTTP, "timeout": 0.3, **NO_SLEEP})
        messages = [provider.message(stub, i) for i in range(200)]
        state = drain(client, messages)
        client.close()
        stub.fault_rate = 0.0
    delivered = stub.deliveries()
    faults = [r["fault"] for r in stub.requests if r["fault"]]
    assert faults, "no fault was injected"
    assert "queued" not in state.values()
    for message in messages:
        count = delivered[provider.address(message)]
        assert count <= 1, f"{message.key} delivered {count} times"
        if state[message.key] == "accepted":
            assert count == 1
        if state[message.key] == "unknown":
            # Resolved as a status query would: the provider's record says whether it went.
            state[message.key] = "accepted" if count else "failed"
    assert set(state.values()) <= {"accepted", "failed"}
    assert sum(1 for s in state.values() if s == "accepted") == sum(delivered.values())
    assert sum(1 for s in state.values() if s == "accepted") >= 150


# --------------------------------------------------------------------------------------------
# Provider specifics


def test_unisender_posts_every_parameter_in_the_body_and_honours_the_60_second_rule():
    with UniSenderStub() as stub:
        client = UniSenderClient(
            stub.credentials, base_url=stub.base_url, from_email="a@example.ru", from_name="A"
        )
        first = client.send_batch([email("1", "same@example.ru")])
        second = client.send_batch([email("2", "same@example.ru")])
        both = httpx.post(stub.base_url + "sendEmail?format=json", data={"api_key": "x"})
    assert first[0].status == "accepted"
    assert second[0].status == "retry"
    assert "меньше минуты" in second[0].error
    assert both.json()["code"] == "invalid_arg"  # GET and POST parameters together
    assert stub.sent[0]["sender_name"] == "A"
    assert stub.sent[0]["list_id"] == "1"


def test_unisender_api_limit_is_retry():
    with UniSenderStub(min_interval=0, calls_per_minute=2) as stub:
        client = UniSenderClient(
            stub.credentials, base_url=stub.base_url, from_email="a@example.ru"
        )
        results = client.send_batch([email(str(i), f"u{i}@example.ru") for i in range(3)])
    assert [r.status for r in results] == ["accepted", "accepted", "retry"]
    assert "api_call_limit_exceeded_for_api_key" in results[2].error


def test_sendsay_follows_redirect_on_the_same_host_and_stops_after_ten():
    with SendsayStub(accounts={"moved": "k"}, redirects={"test-account": "moved"}) as stub:
        client = SendsayClient(
            {"account": "test-account", "api_key": "k"}, base_url=stub.base_url, from_email="a@b.ru"
        )
        results = client.send_batch([email("1", "a@example.ru"), email("2", "b@example.ru")])
        assert [r.status for r in results] == ["accepted", "accepted"]
        assert stub.sent[0]["account"] == "moved"
        # The second message went straight to the new path.
        assert [r["path"].rsplit("/", 1)[-1] for r in stub.requests] == [
            "test-account",
            "moved",
            "moved",
        ]
    loop = {f"a{i}": f"a{i + 1}" for i in range(12)}
    with SendsayStub(accounts={"a12": "k"}, redirects=loop) as stub:
        client = SendsayClient(
            {"account": "a0", "api_key": "k"}, base_url=stub.base_url, from_email="a@b.ru"
        )
        with pytest.raises(PlatformError, match="перенаправлений"):
            client.send_batch([email("1", "a@example.ru")])
    assert stub.sent == []


def test_sendsay_redirect_never_leaves_the_configured_host():
    client = SendsayClient({"account": "acc", "api_key": "k"}, base_url="http://127.0.0.1:9/x/")
    assert client._redirect_path("https://evil.example/x/other") == "other"
    with pytest.raises(PlatformError):
        client._redirect_path("/x/../../etc")


def test_smsru_one_text_goes_as_to_and_msg_different_texts_as_to_phone():
    with SmsRuStub() as stub:
        client = SmsRuClient(stub.credentials, base_url=stub.base_url)
        same = [sms(str(i), phone(i), "Одно и то же") for i in range(3)]
        assert {r.status for r in client.send_batch(same)} == {"accepted"}
        mixed = [sms("a", phone(10), "Первое"), sms("b", phone(10), "Второе")]
        results = by_key(client.send_batch(mixed))
    assert results["a"].status == results["b"].status == "accepted"
    # A number twice in one batch: two requests (the reply is keyed by number).
    assert stub.calls("sms/send") == 3
    assert [e["text"] for e in stub.sent_to(smsru.phone_digits(phone(10)))] == ["Первое", "Второе"]


def test_smsru_per_number_codes():
    with SmsRuStub(unroutable={smsru.phone_digits(phone(2))}) as stub:
        client = SmsRuClient(stub.credentials, base_url=stub.base_url)
        results = by_key(
            client.send_batch(
                [sms("ok", phone(1)), sms("route", phone(2)), sms("long", phone(3), "Ж" * 600)]
            )
        )
        assert results["ok"].status == "accepted"
        assert results["ok"].provider_id
        assert results["route"].status == "failed"
        assert "нет маршрута" in results["route"].error
        assert results["long"].status == "failed"
        assert "превышает 8 СМС" in results["long"].error
        reply = {
            "status": "OK",
            "sms": {
                "79160000009": {
                    "status": "ERROR",
                    "status_code": 220,
                    "status_text": "Сервис временно недоступен",
                }
            },
        }
        assert SmsRuClient.read_reply([sms("x", "+79160000009")], reply)[0].status == "retry"
        sender = SmsRuClient(stub.credentials, base_url=stub.base_url, sender="НЕСОГЛАСОВАН")
        with pytest.raises(PlatformError, match="Имя отправителя не согласовано"):
            sender.send_batch([sms("s", phone(4))])
        stub.broke = True
        with pytest.raises(PlatformError, match="Не хватает средств"):
            client.send_batch([sms("b", phone(5))])


def test_smsc_one_request_per_text_per_number_errors_and_duplicates():
    with SmscStub(unroutable={"79160000002"}) as stub:
        client = SmscClient(stub.credentials, base_url=stub.base_url, sender="CVM-DEMO")
        batch = [
            sms("a", phone(1), "Первое"),
            sms("b", phone(2), "Первое"),
            sms("c", "+7916", "Первое"),
            sms("d", phone(3), "Второе"),
        ]
        results = by_key(client.send_batch(batch))
        assert stub.calls("send.php") == 2  # one per distinct text
        assert results["a"].status == "accepted"
        assert results["a"].provider_id.endswith(":79160000001")
        assert results["b"].status == "failed"
        assert "не может быть доставлено" in results["b"].error
        assert results["c"].status == "failed"
        assert "формат номера" in results["c"].error
        assert results["d"].status == "accepted"
        again = client.send_batch([sms("e", phone(3), "Второе")])  # the same request in a minute
        assert again[0].status == "retry"
        apikey = SmscClient({"apikey": "nope"}, base_url=stub.base_url)
        with pytest.raises(PlatformError, match="authorise error"):
            apikey.send_batch([sms("f", phone(4))])


def test_rustore_dead_token_is_gone_and_the_payload_has_the_fcm_shape():
    with RuStoreStub() as stub:
        client = RuStorePushClient(stub.credentials, base_url=stub.base_url)
        live, dead = "device-token-live-0001", "device-token-dead-0001"
        stub.revoke(dead)
        message = OutgoingMessage(
            key="1",
            to=live,
            subject="Скидка",
            body="Только сегодня",
            data={"link": "https://s.ru/x"},
        )
        results = by_key(
            client.send_batch([message, OutgoingMessage(key="2", to=dead, body="x", subject="y")])
        )
    assert results["1"].status == "accepted"
    assert results["2"].status == "failed"
    assert results["2"].gone
    assert "not registered" in results["2"].error
    assert stub.sent == [
        {
            "id": "1",
            "to": live,
            "text": "Только сегодня",
            "title": "Скидка",
            "data": {"link": "https://s.ru/x"},
            "project": "test-project",
        }
    ]


def test_webpush_delivers_an_encrypted_payload_and_a_gone_subscription_is_gone():
    with WebPushStub() as stub:
        client = WebPushClient(stub.credentials, ttl=600)
        live, gone = stub.subscribe(), stub.subscribe()
        stub.expire(gone)
        results = by_key(
            client.send_batch(
                [
                    OutgoingMessage(
                        key="1", to=json.dumps(live), subject="Т", body="Текст", data={"link": "/x"}
                    ),
                    OutgoingMessage(key="2", to=json.dumps(gone), subject="Т", body="Текст"),
                ]
            )
        )
    assert results["1"].status == "accepted"
    assert results["1"].provider_id.endswith("/messages/1")
    assert results["2"].status == "failed"
    assert results["2"].gone
    assert "410" in results["2"].error
    assert stub.sent[0]["payload"] == {"title": "Т", "body": "Текст", "data": {"link": "/x"}}
    assert stub.sent[0]["ttl"] == 600


def test_webpush_vapid_key_of_another_site_is_refused_not_gone():
    with WebPushStub() as stub:
        other = WebPushStub().vapid  # keys of another site: the subscription was not made with them
        client = WebPushClient(other)
        results = client.send_batch(
            [OutgoingMessage(key="1", to=json.dumps(stub.subscribe()), body="x")]
        )
    assert results[0].status == "failed"
    assert not results[0].gone
    assert "403" in results[0].error
    assert stub.sent == []


# --------------------------------------------------------------------------------------------
# Base URLs and error parsers


@pytest.mark.parametrize(
    ("module", "setting", "cls", "credentials"),
    [
        (unisender, "UNISENDER_BASE_URL", UniSenderClient, {"api_key": "k", "list_id": "1"}),
        (sendsay, "SENDSAY_BASE_URL", SendsayClient, {"account": "a", "api_key": "k"}),
        (smsru, "SMSRU_BASE_URL", SmsRuClient, {"api_id": "k"}),
        (smsc, "SMSC_BASE_URL", SmscClient, {"apikey": "k"}),
        (rustore, "RUSTORE_BASE_URL", RuStorePushClient, {"project_id": "p", "service_token": "t"}),
    ],
)
def test_base_url_comes_from_the_setting_else_the_official_host(
    settings, module, setting, cls, credentials
):
    setattr(settings, setting, "")
    assert module.base_url() == module.DEFAULT_BASE_URL
    assert module.DEFAULT_BASE_URL.startswith("https://")
    assert str(cls(credentials).http.client.base_url) == module.DEFAULT_BASE_URL
    setattr(settings, setting, "http://127.0.0.1:9/stub/")
    assert module.base_url() == "http://127.0.0.1:9/stub/"
    assert str(cls(credentials).http.client.base_url) == "http://127.0.0.1:9/stub/"


SECRET = "internal-token=hunter2"


@pytest.mark.parametrize(
    "parser",
    [
        unisender.unisender_error,
        sendsay.sendsay_error,
        smsru.smsru_error,
        smsc.smsc_error,
        rustore.rustore_error,
    ],
)
@pytest.mark.parametrize(
    "body", [f"<html>{SECRET}</html>", json.dumps({"detail": SECRET}), json.dumps([SECRET]), ""]
)
def test_a_foreign_error_body_is_only_its_status(parser, body):
    reply = httpx.Response(502, content=body, headers={"Content-Type": "text/html"})
    assert parser(reply) == ("http_error", "HTTP 502")


def test_error_parsers_read_the_providers_words():
    def reply(body):
        return httpx.Response(400, json=body)

    assert unisender.unisender_error(
        reply({"error": "Указан неверный ключ", "code": "invalid_api_key"})
    ) == (
        "invalid_api_key",
        "Указан неверный ключ",
    )
    assert sendsay.sendsay_error(
        reply({"errors": [{"id": "error/auth/failed", "explain": "bad key"}]})
    ) == (
        "error/auth/failed",
        "error/auth/failed: bad key",
    )
    assert smsru.smsru_error(
        reply({"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"})
    ) == (
        "200",
        "Неправильный api_id",
    )
    assert smsc.smsc_error(reply({"error": "authorise error", "error_code": 2})) == (
        "2",
        "authorise error",
    )
    assert rustore.rustore_error(
        reply({"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}})
    ) == ("PERMISSION_DENIED", "denied")


def test_a_locally_refused_number_keeps_its_result_when_the_rest_is_unknown():
    options = {"fault_rate": 1.0, "fault_kinds": ("timeout",), "timeout_processes": 1.0}
    with SmsRuStub(timeout_sleep=1.0, **options) as stub:
        client = SmsRuClient(stub.credentials, base_url=stub.base_url, timeout=0.3)
        with pytest.raises(BatchOutcomeUnknown) as caught:
            client.send_batch([sms("bad", "+7916"), sms("ok", phone(1))])
    assert caught.value.unknown_keys == ["ok"]
    assert [(r.key, r.status) for r in caught.value.results] == [("bad", "failed")]
