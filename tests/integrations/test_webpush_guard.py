"""A web push endpoint comes from a browser's subscription, i.e. client data: the worker calls
it only if it is https on port 443 and every address of its host is public, unless
WEBPUSH_ALLOW_PRIVATE_ENDPOINTS (tests, `make run`). And its country for the cross-border
guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.messaging import OutgoingMessage
from integrations.webpush import (
    EndpointRefused,
    WebPushClient,
    check_endpoint,
    endpoint_country,
)
from tests.stubs.webpush import WebPushStub

PUBLIC = "142.250.74.106"
ROOT = Path(__file__).resolve().parents[2]


def resolver(*addresses: str):
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("endpoint", "addresses"),
    [
        ("http://fcm.googleapis.com/fcm/send/x", [PUBLIC]),  # not https
        ("ftp://fcm.googleapis.com/x", [PUBLIC]),
        ("https://fcm.googleapis.com:8443/fcm/send/x", [PUBLIC]),  # not 443
        ("https://user:pw@fcm.googleapis.com/x", [PUBLIC]),
        ("https://127.0.0.1/x", []),
        ("https://10.1.2.3/x", []),
        ("https://192.168.0.10/x", []),
        ("https://169.254.169.254/latest/meta-data", []),  # cloud metadata
        ("https://[::1]/x", []),
        ("https://[::ffff:127.0.0.1]/x", []),
        ("https://[fe80::1]/x", []),
        ("https://0.0.0.0/x", []),
        ("https://push.evil.example/x", ["10.0.0.7"]),  # a public name for a private address
        ("https://push.evil.example/x", [PUBLIC, "127.0.0.1"]),  # one private answer is enough
        ("https:///x", []),
        ("not a url", []),
    ],
)
def test_private_or_plain_endpoints_are_refused(settings, endpoint, addresses):
    settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = False
    with pytest.raises(EndpointRefused):
        check_endpoint(endpoint, resolve=resolver(*addresses))


def test_a_public_https_endpoint_passes(settings):
    settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = False
    check_endpoint("https://fcm.googleapis.com/fcm/send/abc", resolve=resolver(PUBLIC))
    check_endpoint("https://updates.push.services.mozilla.com/wpush/v2/x", resolve=resolver(PUBLIC))


def test_an_unresolvable_host_is_refused(settings):
    settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = False

    def fail(host, port):
        raise OSError("no such host")

    with pytest.raises(EndpointRefused, match="не найден"):
        check_endpoint("https://push.example/x", resolve=fail)


def test_the_setting_allows_loopback_for_tests_and_the_demo(settings):
    settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = True
    check_endpoint("http://127.0.0.1:8709/push/abc")
    with pytest.raises(EndpointRefused):
        check_endpoint("file:///etc/passwd")


def test_the_default_is_strict():
    """Without the variable (production), private endpoints are refused."""
    env = {k: v for k, v in os.environ.items() if k != "WEBPUSH_ALLOW_PRIVATE_ENDPOINTS"}
    env.update(DJANGO_DEBUG="1", DJANGO_SETTINGS_MODULE="config.settings")
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS)"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_the_client_never_calls_a_refused_endpoint(settings):
    with WebPushStub() as stub:
        settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = False
        client = WebPushClient(stub.credentials)
        subscription = stub.subscribe()
        results = client.send_batch(
            [OutgoingMessage(key="1", to=json.dumps(subscription), body="x")]
        )
    assert results[0].status == "failed"
    assert results[0].gone
    assert "https" in results[0].error
    assert stub.requests == []


def test_a_redirect_is_never_followed(settings):
    """A push service that answers with a redirect (to an internal address, say) is refused."""
    from werkzeug.wrappers import Response

    class Redirecting(WebPushStub):
        def handle(self, request):
            return Response(status=307, headers={"Location": "http://169.254.169.254/"})

    settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = True
    with Redirecting() as stub:
        client = WebPushClient(stub.credentials)
        results = client.send_batch(
            [OutgoingMessage(key="1", to=json.dumps(stub.subscribe()), body="x")]
        )
    assert results[0].status == "failed"
    assert len(stub.requests) == 1


def test_a_key_text_is_never_read_as_a_file(tmp_path):
    """pywebpush would read a VAPID key from any file the text names."""
    path = tmp_path / "key.pem"
    path.write_text(WebPushStub().vapid["vapid_private_key"])
    with pytest.raises(ValueError):  # noqa: PT011 - whatever py_vapid raises for bad key text
        WebPushClient({"vapid_private_key": str(path), "vapid_subject": "mailto:a@b.ru"})


@pytest.mark.parametrize(
    ("endpoint", "country"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "US"),
        ("https://android.googleapis.com/gcm/send/abc", "US"),
        ("https://updates.push.services.mozilla.com/wpush/v2/abc", "US"),
        ("https://web.push.apple.com/QGx", "US"),
        ("https://api.push.apple.com/3/device/x", "US"),
        ("https://wns2-par02p.notify.windows.com/w/?token=x", "US"),
        ("https://push.yandex.ru/x", ""),
        ("https://evilpush.apple.com.example/x", ""),
        ("https://notpush.apple.com/x", ""),
        ("not a url", ""),
    ],
)
def test_endpoint_country(endpoint, country):
    assert endpoint_country(endpoint) == country
