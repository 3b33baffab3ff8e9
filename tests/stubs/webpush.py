"""Loopback stub of a browser vendor's web push service (RFC 8030/8291/8292): ``POST
/push/{subscription id}``.

``subscribe()`` creates a subscription as a browser would (a P-256 key pair and an auth secret)
and returns its JSON form (``{"endpoint", "keys": {"p256dh", "auth"}}``). What it checks:

- ``Authorization: vapid t=<JWT>, k=<public key>``: an ES256 JWT signed by that key, whose
  ``aud`` is this service's origin, ``exp`` in the future and at most 24 h away, and ``sub`` a
  ``mailto:`` or ``https:`` contact (else 401); when the subscription was made with an
  application server key, ``k`` must be it (else 403);
- ``TTL`` present (an integer; else 400), ``Content-Encoding: aes128gcm`` (else 415), a body
  of at most 4096 bytes (else 413) that decrypts with the subscription's keys (else 400);
- an expired subscription (``expire``) answers 410, an unknown one 404.

``POST /push/subscribe`` with ``{"application_server_key": <VAPID public key>}`` makes a
subscription as a browser would for a page (the demo seeds its subscriptions through it).

A success is 201 with a ``Location``; the decrypted payload is recorded (``sent``: ``to`` is
the endpoint, ``payload`` the JSON the client sent, ``text`` its ``body``).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from werkzeug.wrappers import Request, Response

from tests.stubs.base import json_response, read_json
from tests.stubs.channels import MessagingStub

MAX_PAYLOAD = 4096


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_keys() -> dict[str, str]:
    """A fresh VAPID key pair as a client company would enter it (PEM private key, base64url
    public key) plus a subject."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {
        "vapid_private_key": pem,
        "vapid_public_key": b64url(public),
        "vapid_subject": "mailto:push@example.ru",
    }


class WebPushStub(MessagingStub):
    prefix = "/push/"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self.vapid = vapid_keys()

    @property
    def credentials(self) -> dict[str, str]:
        """VAPID keys the stub's subscriptions were made with (``subscribe()``)."""
        return dict(self.vapid)

    def subscribe(self, application_server_key: str | None = None) -> dict[str, Any]:
        """A new subscription (what a browser's PushManager.subscribe returns), made with the
        stub's VAPID public key unless another is given."""
        private = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        sub_id = secrets.token_urlsafe(12)
        public = private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        with self._lock:
            self._subscriptions[sub_id] = {
                "private": private,
                "auth": auth,
                "server_key": application_server_key or self.vapid["vapid_public_key"],
                "expired": False,
            }
        return {
            "endpoint": f"{self.base_url}{sub_id}",
            "keys": {"p256dh": b64url(public), "auth": b64url(auth)},
        }

    def expire(self, subscription: dict[str, Any]) -> None:
        sub_id = subscription["endpoint"].rsplit("/", 1)[-1]
        with self._lock:
            self._subscriptions[sub_id]["expired"] = True

    def error_body(self, status: int, code: str, message: str) -> Any:
        return {"code": status, "errno": int(code), "error": message, "message": message}

    def code_for_status(self, status: int) -> str:
        return {429: "117", 404: "102", 410: "106"}.get(status, "999" if status >= 500 else "101")

    def handle(self, request: Request) -> Response:
        sub_id = request.path[len(self.prefix) :].strip("/")
        if sub_id == "subscribe" and request.method == "POST":
            # What a browser does for a page (the demo seeds subscriptions through it).
            body = read_json(request) or {}
            key = body.get("application_server_key") if isinstance(body, dict) else None
            return json_response(self.subscribe(key or None), 201)
        if request.method != "POST":
            raise self.error(405, "101", "POST only")
        with self._lock:
            subscription = self._subscriptions.get(sub_id)
        if subscription is None:
            raise self.error(404, "102", "Subscription not found")
        self._check_vapid(request, subscription)
        ttl = request.headers.get("TTL", "")
        if not ttl.isdigit():
            raise self.error(400, "101", "TTL header is required")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            raise self.error(415, "101", "Content-Encoding must be aes128gcm")
        content = request.get_data()
        if len(content) > MAX_PAYLOAD:
            raise self.error(413, "104", "Payload too large")
        if subscription["expired"]:
            raise self.error(410, "106", "Subscription expired")
        try:
            plain = http_ece.decrypt(
                content,
                private_key=subscription["private"],
                auth_secret=subscription["auth"],
                version="aes128gcm",
            )
            payload = json.loads(plain)
        except Exception:  # noqa: BLE001 - any failure to decrypt is the same refusal
            raise self.error(400, "101", "Payload does not decrypt") from None
        endpoint = f"{self.base_url}{sub_id}"
        message_id = self._accept(
            to=endpoint,
            text=payload.get("body", "") if isinstance(payload, dict) else "",
            payload=payload,
            ttl=int(ttl),
        )
        return json_response(None, 201, {"Location": f"{self.root_url}/messages/{message_id}"})

    def _check_vapid(self, request: Request, subscription: dict[str, Any]) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "vapid":
            raise self.error(401, "109", "VAPID authorization is required")
        params = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part.strip())
        token, key = params.get("t", ""), params.get("k", "")
        try:
            head, body, signature = token.split(".")
            public = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(key)
            )
            raw = b64url_decode(signature)
            der = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(b64url_decode(body))
        except (ValueError, InvalidSignature):
            raise self.error(401, "109", "VAPID token does not verify") from None
        now = time.time()
        if claims.get("aud") != self.root_url:
            raise self.error(401, "109", f"VAPID aud must be {self.root_url}")
        if not now < float(claims.get("exp", 0)) <= now + 86400 + 60:
            raise self.error(401, "109", "VAPID exp must be within 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise self.error(401, "109", "VAPID sub must be a mailto: or https: contact")
        if subscription["server_key"] and key != subscription["server_key"]:
            raise self.error(403, "109", "VAPID key does not match the subscription's")
