"""Web push (RFC 8030/8291/8292) through pywebpush, with VAPID.

Facts in ../shared/reference/channels-and-integrations.md: a POST to the subscription's endpoint
with ``TTL``, ``Content-Encoding: aes128gcm`` and ``Authorization: vapid t=<JWT>,k=<key>``; 201
= accepted; 404/410 = the subscription is gone (delete it). The endpoint belongs to the browser
vendor, often abroad: :func:`endpoint_country` gives its country for the cross-border guard.

The endpoint comes from a browser's subscription, i.e. client data, so it is guarded against
server-side request forgery (:func:`check_endpoint`): https on port 443 only, and every address
the host resolves to must be public (no loopback, private, link-local, multicast, reserved or
unspecified address), unless ``settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS`` (tests and ``make
run`` only). Redirects are never followed. What it does not cover: a DNS answer that changes
between the check and the request (rebinding); production workers should also sit behind an
egress firewall.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from ..http import RETRY_STATUSES, OutcomeUnknown, error_text
from ..messaging import OutgoingMessage, SendResult, send_each

logger = logging.getLogger(__name__)

GONE_STATUSES = frozenset({404, 410})
DEFAULT_TTL = 86400

# Push services of the browser vendors and the country where each is operated (for the
# cross-border guard). Chrome, Edge (Chromium), Yandex Browser and Opera use Google's FCM;
# Firefox uses Mozilla's autopush; Safari uses Apple's; legacy Edge uses Windows WNS.
PUSH_SERVICE_COUNTRIES = {
    "fcm.googleapis.com": "US",
    "android.googleapis.com": "US",
    "updates.push.services.mozilla.com": "US",
    "push.services.mozilla.com": "US",
    "push.apple.com": "US",
    "notify.windows.com": "US",
}


class EndpointRefused(ValueError):  # noqa: N818 - a refusal, said in its name
    """A subscription endpoint the worker must not call."""


def endpoint_country(endpoint: str) -> str:
    """The ISO country code of a web push endpoint's operator (``"US"`` for Google's FCM,
    Mozilla's autopush, Apple's ``*.push.apple.com`` and Windows' ``*.notify.windows.com``), or
    ``""`` when the host is not a known push service: unknown, which the cross-border guard
    must treat as abroad (never as Russia)."""
    host = (urlsplit(endpoint).hostname or "").lower().rstrip(".")
    for domain, country in PUSH_SERVICE_COUNTRIES.items():
        if host == domain or host.endswith("." + domain):
            return country
    return ""


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local_test_endpoint(endpoint: str) -> bool:
    """A push service on this very machine, accepted only where private endpoints are
    (``settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS``: tests and ``make run``); it counts as in
    Russia for the cross-border guard."""
    host = (urlsplit(endpoint).hostname or "").lower()
    return bool(settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS) and host in LOOPBACK_HOSTS


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def check_endpoint(
    endpoint: str,
    *,
    allow_private: bool | None = None,
    resolve: Callable[[str, int], list[str]] | None = None,
) -> None:
    """Raise :class:`EndpointRefused` unless ``endpoint`` is an https URL on port 443 whose
    host resolves only to public addresses (with ``allow_private``, default
    ``settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS``, any http(s) URL passes)."""
    if allow_private is None:
        allow_private = settings.WEBPUSH_ALLOW_PRIVATE_ENDPOINTS
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise EndpointRefused(f"адрес подписки не разобран: {exc}") from None
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise EndpointRefused("адрес подписки должен быть https-адресом")
    if parts.username or parts.password:
        raise EndpointRefused("адрес подписки не может содержать логин и пароль")
    if allow_private:
        return
    if parts.scheme != "https":
        raise EndpointRefused("адрес подписки должен быть https-адресом")
    if port not in (None, 443):
        raise EndpointRefused(f"порт {port} не разрешён: только 443")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = (resolve or _resolve)(host, 443)
        except OSError as exc:
            raise EndpointRefused(f"адрес {host} не найден: {exc}") from None
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
    if not addresses or not all(_public(a) for a in addresses):
        raise EndpointRefused(f"адрес {host} ведёт во внутреннюю сеть: запрещено")


def _resolve(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def _vapid(private_key: str) -> Vapid:
    """A Vapid signer from the key text (PEM, or DER/raw base64url). Never from a file path:
    pywebpush would read any file the text names."""
    text = private_key.strip()
    if text.startswith("-----BEGIN"):
        return Vapid.from_pem(text.encode())
    return Vapid.from_string(private_key=text)


class WebPushClient:
    """Web push to browsers' subscriptions, one request per subscription.

    ``credentials`` (what the client company enters, the keys its site's service worker
    subscribed with): ``vapid_private_key`` (PEM, or base64url DER/raw), ``vapid_public_key``
    (base64url, kept for the site's subscription script; not needed to send) and
    ``vapid_subject`` (``mailto:`` or ``https:`` contact of the sender, required by the push
    services). A message's ``to`` is the subscription as JSON (``{"endpoint", "keys":
    {"p256dh", "auth"}}``); the payload is JSON ``{"title": subject, "body", "data"}``.
    201/202 accepted; 404/410 fail the message with ``gone=True``; 429/5xx and broken
    connections are retried with backoff, then that message is ``retry`` (other vendors'
    subscriptions are not held up); a timeout leaves that message unknown, never resent."""

    channel = "push"
    max_batch = 100
    idempotent = False

    def __init__(
        self,
        credentials: dict[str, Any],
        *,
        ttl: int = DEFAULT_TTL,
        timeout: float | None = None,
        max_attempts: int | None = None,
        max_backoff: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        private_key = str(credentials.get("vapid_private_key") or "")
        self.subject = str(credentials.get("vapid_subject") or "")
        if not private_key or not self.subject.startswith(("mailto:", "https:")):
            raise ValueError(
                "Web push: нужны vapid_private_key и vapid_subject (mailto: или https:)"
            )
        self.vapid = _vapid(private_key)
        self.public_key = str(credentials.get("vapid_public_key") or "")
        self.ttl = ttl
        self.timeout = timeout if timeout is not None else settings.AD_PLATFORM_TIMEOUT
        self.max_attempts = max_attempts or settings.AD_PLATFORM_MAX_ATTEMPTS
        self.max_backoff = (
            max_backoff if max_backoff is not None else settings.AD_PLATFORM_MAX_BACKOFF
        )
        self._sleep = sleep
        self.session = requests.Session()
        self.session.max_redirects = 0  # a redirect could lead anywhere: never followed
        self.session.trust_env = False  # no proxy from the environment decides the route

    def close(self) -> None:
        self.session.close()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return send_each(messages, self._send_one)

    def _pause(self, attempt: int, retry_after: str = "") -> None:
        delay = min(self.max_backoff, 0.5 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311
        if retry_after.isdigit():
            delay = min(self.max_backoff, max(delay, float(retry_after)))
        self._sleep(delay)

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        try:
            subscription = json.loads(message.to)
            endpoint = subscription["endpoint"]
            keys = subscription["keys"]
            if not isinstance(endpoint, str) or not keys.get("p256dh") or not keys.get("auth"):
                raise ValueError
        except (ValueError, TypeError, KeyError, AttributeError):
            return SendResult(
                key=message.key, status="failed", error="подписка повреждена", gone=True
            )
        try:
            check_endpoint(endpoint)
        except EndpointRefused as exc:
            return SendResult(key=message.key, status="failed", error=str(exc), gone=True)
        payload = json.dumps(
            {"title": message.subject, "body": message.body, "data": dict(message.data)},
            ensure_ascii=False,
        )
        last = ""
        for attempt in range(self.max_attempts):
            response = None
            try:
                response = webpush(
                    subscription_info={"endpoint": endpoint, "keys": keys},
                    data=payload,
                    vapid_private_key=self.vapid,
                    vapid_claims={"sub": self.subject},
                    timeout=self.timeout,
                    ttl=self.ttl,
                    requests_session=self.session,
                )
            except WebPushException as exc:
                response = exc.response
                if response is None:  # a bad subscription key, say
                    return SendResult(
                        key=message.key, status="failed", error=str(exc.message)[:200]
                    )
            except requests.Timeout as exc:
                raise OutcomeUnknown(f"нет ответа за {self.timeout:g} с: web push") from exc
            except requests.TooManyRedirects:
                return SendResult(
                    key=message.key, status="failed", error="служба push ответила перенаправлением"
                )
            except requests.RequestException as exc:
                last = f"соединение не удалось: {exc}"
            if response is not None:
                status = response.status_code
                if status < 300:
                    return SendResult(
                        key=message.key,
                        status="accepted",
                        provider_id=response.headers.get("Location", ""),
                    )
                # Only the status and its reason phrase: a push service's body (often an HTML
                # page) is never shown to a client (as integrations.http.unparsed_error).
                text = error_text(str(getattr(response, "reason", "") or "")) or "ошибка"
                if status in GONE_STATUSES:
                    return SendResult(
                        key=message.key, status="failed", error=f"HTTP {status}: {text}", gone=True
                    )
                if status not in RETRY_STATUSES:
                    return SendResult(
                        key=message.key, status="failed", error=f"HTTP {status}: {text}"
                    )
                last = f"HTTP {status}: {text}"
            logger.info("web push: %s (attempt %s of %s)", last, attempt + 1, self.max_attempts)
            if attempt + 1 < self.max_attempts:
                headers = response.headers if response is not None else {}
                self._pause(attempt, headers.get("Retry-After", ""))
        return SendResult(key=message.key, status="retry", error=last)
