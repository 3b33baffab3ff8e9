"""Opens and clicks: an open pixel in every marketing email and signed click redirects for links
in email and SMS. Each names the message by (enrolment, step), which is unique, so links can be
written before the message row exists. Opens and clicks become Events (``email_open``,
``email_click``, ``sms_click``) tied to the message, and move it forward (opened, clicked).

The redirect goes only where the signed token says: nobody can use it as an open redirect. The
tokens never expire (a letter is opened months later); a tampered one answers 404.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from clients.models import Event
from consent.unsubscribe import public_base_url

from .models import Channel, Message, TrackedLink
from .templating import RenderedMessage

SIGNING_SALT = "campaigns.tracking.v1"  # a namespace for signing, not a secret
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
EVENT_OF = {
    ("open", Channel.EMAIL): Event.Type.EMAIL_OPEN,
    ("click", Channel.EMAIL): Event.Type.EMAIL_CLICK,
    ("click", Channel.SMS): Event.Type.SMS_CLICK,
}
# States a message may still move forward from when opened or clicked.
OPENABLE = (Message.State.SENT, Message.State.DELIVERED)
CLICKABLE = (Message.State.SENT, Message.State.DELIVERED, Message.State.OPENED)


def _token(payload: list) -> str:
    return signing.dumps(payload, salt=SIGNING_SALT, compress=True)


def click_url(enrollment_id: int, step_id: int, url: str) -> str:
    return public_base_url() + reverse(
        "campaigns-click", args=[_token([enrollment_id, step_id, url])]
    )


def open_url(enrollment_id: int, step_id: int) -> str:
    return public_base_url() + reverse("campaigns-open", args=[_token([enrollment_id, step_id])])


def _short_signature(payload: str) -> str:
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"{SIGNING_SALT}:{payload}".encode(), hashlib.sha256
    ).digest()
    # 72 bits in base 36: unguessable for a redirect, and no "-" (the token's separator).
    return _b36(int.from_bytes(digest[:9], "big"))


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def short_click_url(
    client_id: int, enrollment_id: int, step_id: int, url: str, cache: dict | None = None
) -> str:
    """An SMS's link as ``/t/s/<enrolment>-<step>-<link>-<signature>``: the address itself is
    kept once per client (:class:`TrackedLink`), so the SMS carries ~60 characters, and the
    redirect can only lead to a link of that client."""
    cache = {} if cache is None else cache
    if url not in cache:
        url_hash = hashlib.sha256(url.encode()).hexdigest()
        link, _created = TrackedLink.objects.for_client(client_id).get_or_create(
            client_id=client_id, url_hash=url_hash, defaults={"url": url}
        )
        cache[url] = link.pk
    payload = f"{_b36(enrollment_id)}-{_b36(step_id)}-{_b36(cache[url])}"
    return public_base_url() + reverse(
        "campaigns-short-click", args=[f"{payload}-{_short_signature(payload)}"]
    )


def click_wrapper(
    enrollment_id: int,
    step_id: int,
    *,
    channel: str,
    client_id: int | None = None,
    links: dict | None = None,
) -> Callable[[str], str]:
    """Rewrites a link into our click redirect; SMS links become short ones (``links``: the
    render's cache of link ids, one query per distinct address)."""

    def wrap(url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            return url
        if channel == Channel.SMS and client_id is not None:
            return short_click_url(client_id, enrollment_id, step_id, url, links)
        return click_url(enrollment_id, step_id, url)

    return wrap


def with_open_pixel(message: RenderedMessage, enrollment_id: int, step_id: int) -> RenderedMessage:
    pixel = f'<img src="{open_url(enrollment_id, step_id)}" width="1" height="1" alt="">'
    body = message.body
    if "</body>" in body:
        body = body.replace("</body>", pixel + "</body>", 1)
    else:
        body += pixel
    return replace(message, body=body)


def _message_of(token: str, *, with_url: bool) -> tuple[Message, str]:
    try:
        payload = signing.loads(token, salt=SIGNING_SALT)
        enrollment_id, step_id = int(payload[0]), int(payload[1])
        url = str(payload[2]) if with_url else ""
    except (signing.BadSignature, ValueError, TypeError, IndexError):
        raise Http404 from None
    return _message_of_ids(enrollment_id, step_id)[0], url


def _message_of_ids(enrollment_id: int, step_id: int) -> tuple[Message, str]:
    message = (
        Message.objects.unscoped()
        .filter(enrollment_id=enrollment_id, step_id=step_id)
        .only("pk", "client_id", "customer_id", "chain_id", "step_id", "channel", "state")
        .first()
    )
    if message is None:
        raise Http404
    return message, ""


def message_engagement_record(message: Message, kind: str, *, url: str = "") -> None:
    """An open or a click of a message: the Event (once per message and kind) and the message's
    state and time (forward only: a click implies an open)."""
    event_type = EVENT_OF.get((kind, message.channel))
    now = timezone.now()
    with transaction.atomic():
        if event_type is not None:
            Event.objects.bulk_create(
                [
                    Event(
                        client_id=message.client_id,
                        customer_id=message.customer_id,
                        external_id=f"msg-{message.pk}-{kind}",
                        type=event_type,
                        occurred_at=now,
                        properties={
                            "message_id": message.pk,
                            "chain_id": message.chain_id,
                            "step_id": message.step_id,
                            **({"url": url[:500]} if url else {}),
                        },
                    )
                ],
                ignore_conflicts=True,
            )
        rows = Message.objects.for_client(message.client_id).filter(pk=message.pk)
        if kind == "open":
            rows.filter(opened_at__isnull=True).update(opened_at=now)
            rows.filter(state__in=OPENABLE).update(state=Message.State.OPENED)
        else:
            rows.filter(opened_at__isnull=True, channel=Channel.EMAIL).update(opened_at=now)
            rows.filter(clicked_at__isnull=True).update(clicked_at=now)
            rows.filter(Q(state__in=CLICKABLE)).update(state=Message.State.CLICKED)


@never_cache
@require_GET
def open_pixel_view(request: HttpRequest, token: str) -> HttpResponse:
    message, _url = _message_of(token, with_url=False)
    message_engagement_record(message, "open")
    return HttpResponse(PIXEL, content_type="image/gif")


@never_cache
@require_GET
def click_view(request: HttpRequest, token: str) -> HttpResponse:
    message, url = _message_of(token, with_url=True)
    if urlsplit(url).scheme not in ("http", "https"):
        raise Http404
    message_engagement_record(message, "click", url=url)
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def short_click_view(request: HttpRequest, token: str) -> HttpResponse:
    try:
        enrollment, step, link, signature = token.split("-")
        payload = f"{enrollment}-{step}-{link}"
        if not hmac.compare_digest(signature, _short_signature(payload)):
            raise Http404
        enrollment_id, step_id, link_id = int(enrollment, 36), int(step, 36), int(link, 36)
    except ValueError:
        raise Http404 from None
    message, _url = _message_of_ids(enrollment_id, step_id)
    url = (
        TrackedLink.objects.for_client(message.client_id)
        .filter(pk=link_id)
        .values_list("url", flat=True)
        .first()
    )
    if url is None or urlsplit(url).scheme not in ("http", "https"):
        raise Http404
    message_engagement_record(message, "click", url=url)
    return HttpResponseRedirect(url)


urlpatterns = [
    path("o/<str:token>.gif", open_pixel_view, name="campaigns-open"),
    path("c/<str:token>", click_view, name="campaigns-click"),
    path("s/<str:token>", short_click_view, name="campaigns-short-click"),
]
