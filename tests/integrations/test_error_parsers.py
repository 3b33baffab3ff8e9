"""The platforms' error parsers: the platform's own words from its error format, and for any
other body only ``HTTP <status>`` (issue 11: a raw body never reaches a client)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from integrations.vk_ads import vk_error
from integrations.yandex_audiences import yandex_error

SECRET = "internal-token=hunter2"


def reply(status: int, body, content_type: str = "application/json") -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.Response(status, content=content, headers={"Content-Type": content_type})


FOREIGN_BODIES = [
    f"<html><body>{SECRET}</body></html>",
    f"upstream error: {SECRET}",
    json.dumps([SECRET]),
    json.dumps({"detail": SECRET}),
    json.dumps({"errors": SECRET, "trace": SECRET}),
    json.dumps({"errors": [SECRET]}),
    json.dumps({"error": [SECRET]}),
    json.dumps({"error": {}}),
    json.dumps({"message": {"nested": SECRET}}),
    json.dumps(SECRET),
    "",
]


@pytest.mark.parametrize("parser", [yandex_error, vk_error])
@pytest.mark.parametrize("body", FOREIGN_BODIES)
def test_a_foreign_body_is_only_its_status(parser, body, caplog):
    with caplog.at_level(logging.DEBUG, logger="integrations.http"):
        code, message = parser(reply(502, body, "text/html"))
    assert (code, message) == ("http_error", "HTTP 502")
    if SECRET in body:
        assert SECRET in caplog.text  # for the operator, at debug level only


def test_yandex_error_reads_its_format():
    body = {
        "errors": [{"error_type": "invalid_parameter", "message": "bad file", "location": "file"}],
        "code": 400,
        "message": "bad file",
    }
    assert yandex_error(reply(400, body)) == ("invalid_parameter", "bad file (file)")
    assert yandex_error(reply(403, {"code": 403, "message": "Forbidden"})) == ("403", "Forbidden")


def test_vk_error_reads_its_format():
    body = {
        "error": {
            "code": "invalid_file",
            "message": "bad lines",
            "fields": {"file": [{"line_number": 3, "code": "bad_md5", "line": "zz"}]},
        }
    }
    assert vk_error(reply(400, body)) == ("invalid_file", "bad lines; file, строка 3: bad_md5 (zz)")
    oauth = {"error": "invalid_client", "error_description": "Client authentication failed"}
    assert vk_error(reply(401, oauth)) == ("invalid_client", "Client authentication failed")


def test_a_long_message_is_cut():
    message = "x" * 5000
    assert len(yandex_error(reply(400, {"message": message}))[1]) == 500
    assert len(vk_error(reply(400, {"error": {"message": message}}))[1]) <= 500
