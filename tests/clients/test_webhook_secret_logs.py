"""Secrets in logs (issue 11, security 6): the amoCRM webhook's secret is a segment of its URL's
path, and no log line that carries a request's path shows it: the development server's access
log (``django.server``), Django's request warnings (``django.request``), gunicorn's access log
(``config.gunicorn``). The former ``?client=&secret=`` form is refused with a 400 that names the
new form."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
import requests
from django.core.servers.basehttp import (
    WSGIRequestHandler,
    WSGIServer,
    get_internal_wsgi_application,
)
from django.urls import reverse
from gunicorn.config import Config
from rest_framework.test import APIClient

from agency.log_masking import mask_secrets
from clients.models import Customer
from config.gunicorn import SecretMaskingLogger

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-Zx9_webhook-value-42"  # noqa: S105 - a test value
FORM = "application/x-www-form-urlencoded"
CONTACT = urlencode(
    [
        ("contacts[add][0][id]", "501"),
        ("contacts[add][0][name]", "Иван Петров"),
        ("contacts[add][0][custom_fields][0][code]", "EMAIL"),
        ("contacts[add][0][custom_fields][0][values][0][value]", "ivan@example.com"),
    ]
)


@pytest.fixture
def amo_client(client_a):
    client_a.webhook_secret = SECRET
    client_a.save(update_fields=["webhook_secret"])
    return client_a


class Records(logging.Handler):
    """Every record a logger emits, as the line its handlers would write."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def captured():
    """Records of the loggers that write request paths, attached where they are emitted (the
    development server's logger does not propagate)."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("django.server", "django.request")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def dev_server():
    """Django's development server (what `make run` serves), with its access log."""
    server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_internal_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_secret_in_the_path_is_not_in_the_dev_servers_access_log(
    amo_client, dev_server, captured
):  # dev_server first: loading the app configures logging, which drops foreign handlers
    # The server thread does not see this test's transaction: the client is "unknown" there,
    # a 403, which both loggers write with the full path.
    url = f"{dev_server}/api/v1/webhooks/amocrm/{amo_client.slug}/{SECRET}/"
    old = f"{dev_server}/api/v1/webhooks/amocrm/?client={amo_client.slug}&secret={SECRET}"
    for target, status in ((url, 403), (old, 400)):
        response = requests.post(target, data=CONTACT, headers={"Content-Type": FORM}, timeout=10)
        assert response.status_code == status

    def access_lines() -> list[str]:
        return [line for line in captured.lines if line.startswith('"POST /api/v1/webhooks/')]

    deadline = time.monotonic() + 5
    while len(access_lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the server logs a request after its reply is sent
    first, second = access_lines()
    assert first.startswith(f'"POST /api/v1/webhooks/amocrm/{amo_client.slug}/***/ HTTP/1.1" 403')
    assert second.startswith(
        f'"POST /api/v1/webhooks/amocrm/?client={amo_client.slug}&secret=*** HTTP/1.1" 400'
    )
    assert f"Forbidden: /api/v1/webhooks/amocrm/{amo_client.slug}/***/" in captured.lines
    assert not [line for line in captured.lines if SECRET in line]


def test_a_webhook_with_the_secret_in_the_path_is_taken_and_logs_no_secret(
    amo_client, captured, caplog
):
    api = APIClient()
    url = reverse("webhook-amocrm", kwargs={"client_slug": amo_client.slug, "secret": SECRET})
    assert url == f"/api/v1/webhooks/amocrm/{amo_client.slug}/{SECRET}/"
    with caplog.at_level(logging.DEBUG):
        taken = api.post(url, data=CONTACT, content_type=FORM)
        refused = api.post(url.replace(SECRET, "guess"), data=CONTACT, content_type=FORM)
    assert taken.status_code == 200, taken.json()
    assert Customer.objects.for_client(amo_client).filter(external_id="amo-501").exists()
    assert refused.status_code == 403
    assert "Forbidden: /api/v1/webhooks/amocrm/" in "\n".join(captured.lines)
    for line in [*captured.lines, *(record.getMessage() for record in caplog.records)]:
        assert SECRET not in line
        assert "guess" not in line


def test_the_old_query_form_is_refused_with_the_new_form(amo_client):
    response = APIClient().post(
        f"/api/v1/webhooks/amocrm/?client={amo_client.slug}&secret={SECRET}",
        data=CONTACT,
        content_type=FORM,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "webhook_url_changed"
    assert "/api/v1/webhooks/amocrm/<код клиента>/<секрет>/" in body["message"]
    assert SECRET not in response.content.decode()
    assert not Customer.objects.for_client(amo_client).exists()


def test_gunicorns_access_log_masks_the_secret():
    config = Config()
    config.set("accesslog", "-")
    log = SecretMaskingLogger(config)
    captured = Records()
    log.access_log.addHandler(captured)
    path = f"/api/v1/webhooks/amocrm/shop/{SECRET}/"
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": f"secret={SECRET}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.5",
        "HTTP_REFERER": f"https://shop.amocrm.ru{path}",
    }
    response = SimpleNamespace(status="200 OK", sent=17, headers=[])
    request = SimpleNamespace(headers=[("HOST", "cvm.example.ru")])
    log.access(response, request, environ, timedelta(milliseconds=5))
    config.set("access_log_format", '%(U)s %(q)s "%({raw_uri}e)s"')
    log.access(response, request, environ, timedelta(milliseconds=5))

    assert captured.lines[0].startswith(
        "203.0.113.5 - - [",
    )
    assert '"POST /api/v1/webhooks/amocrm/shop/***/ HTTP/1.1" 200 17' in captured.lines[0]
    assert captured.lines[1] == (
        '/api/v1/webhooks/amocrm/shop/***/ secret=*** "/api/v1/webhooks/amocrm/shop/***/"'
    )
    assert not [line for line in captured.lines if SECRET in line]


W = "/api/v1/webhooks"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"{W}/amocrm/shop/abc-_9/", f"{W}/amocrm/shop/***/"),
        (f"POST {W}/amocrm/shop/abc HTTP/1.1", f"POST {W}/amocrm/shop/*** HTTP/1.1"),
        (f"{W}/amocrm/?client=shop&secret=abc", f"{W}/amocrm/?client=shop&secret=***"),
        ("secret=abc&client=shop", "secret=***&client=shop"),
        (f"{W}/bitrix24/?client=shop", f"{W}/bitrix24/?client=shop"),
        ("/api/v1/customers/?secretary=1", "/api/v1/customers/?secretary=1"),
    ],
)
def test_mask_secrets(text, masked):
    assert mask_secrets(text) == masked


def test_the_client_admin_shows_the_url_to_paste_into_amocrm(client, agency_admin, amo_client):
    client.force_login(agency_admin)
    page = client.get(reverse("admin:clients_client_change", args=[amo_client.pk]))
    assert f"/api/v1/webhooks/amocrm/{amo_client.slug}/{SECRET}/" in page.content.decode()
