"""One-click unsubscribe: signed links, List-Unsubscribe headers, the confirmation page.

Every marketing message carries a link ``/consent/u/<token>/`` whose token is signed with the
project's SECRET_KEY (``django.core.signing``, its own salt) and names the client, the customer
and the purpose (``email_marketing``, ``sms_marketing``, ...). The token never expires: 152-FZ
lets a person withdraw at any time, also from a years-old letter.

- ``GET`` shows a confirmation page and writes nothing (mail scanners and link previews
  prefetch links; a withdrawal must be the person's act).
- ``POST`` from that page records a withdrawal (source ``unsubscribe_link``, evidence from the
  request) through :func:`consent.services.consent_record_append` and says "Вы отписаны".
- ``POST`` with the body ``List-Unsubscribe=One-Click`` is a mail client's one-click unsubscribe
  (RFC 8058): the same withdrawal, answered with a bare 200.
- A bad or tampered token answers 400 and writes nothing.
- Idempotent: when the person's latest record for the purpose is already a withdrawal, nothing
  new is written and the page says so again.

The view is exempt from CSRF on purpose: RFC 8058 one-click POSTs come without a cookie or a
form token, and the signed token in the URL is itself the unguessable capability that CSRF
protection would otherwise provide.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from clients.models import Client, Customer

from .models import ConsentPurpose, ConsentRecord
from .purposes import CHANNEL_PURPOSE
from .selectors import consent_history
from .services import ConsentError, Evidence, consent_purpose_get, consent_record_append

SIGNING_SALT = "consent.unsubscribe.v1"  # a namespace for signing, not a secret
ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"

CHANNEL_LABELS = {
    "email": "email-рассылки",
    "sms": "SMS-рассылки",
    "push": "push-уведомления",
    "messenger": "сообщения в мессенджерах",
}


def public_base_url() -> str:
    return getattr(settings, "PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")


def purpose_code_for_channel(channel: str) -> str:
    """The purpose whose consent a message over ``channel`` needs (email → email_marketing):
    :data:`consent.purposes.CHANNEL_PURPOSE`."""
    try:
        return CHANNEL_PURPOSE[channel]
    except KeyError:
        raise ConsentError(
            "unknown_channel", f"Нет цели обработки для канала {channel!r}."
        ) from None


# --------------------------------------------------------------------------------------------
# Links and headers


def unsubscribe_token(*, customer: Customer, purpose_code: str) -> str:
    consent_purpose_get(purpose_code)  # refuses an unknown purpose now, not when clicked
    return signing.dumps([customer.client_id, customer.pk, purpose_code], salt=SIGNING_SALT)


def unsubscribe_url(*, customer: Customer, purpose_code: str) -> str:
    """The absolute, signed unsubscribe link of one customer for one purpose."""
    token = unsubscribe_token(customer=customer, purpose_code=purpose_code)
    return public_base_url() + reverse("consent:unsubscribe", args=[token])


def unsubscribe_headers(*, customer: Customer, purpose_code: str) -> dict[str, str]:
    """The email headers of RFC 2369 / RFC 8058 one-click unsubscribe."""
    url = unsubscribe_url(customer=customer, purpose_code=purpose_code)
    return {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}",
    }


@dataclass(frozen=True)
class UnsubscribeTarget:
    client: Client
    customer: Customer
    purpose: ConsentPurpose


def unsubscribe_target(token: str) -> UnsubscribeTarget | None:
    """Who and what a token names, or None when it is forged, damaged or names nobody."""
    try:
        client_id, customer_id, purpose_code = signing.loads(token, salt=SIGNING_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    customer = (
        Customer.objects.for_client(client_id)
        .select_related("client")
        .filter(pk=customer_id)
        .first()
    )
    purpose = ConsentPurpose.objects.filter(code=purpose_code).first()
    if customer is None or purpose is None:
        return None
    return UnsubscribeTarget(client=customer.client, customer=customer, purpose=purpose)


def _already_withdrawn(target: UnsubscribeTarget) -> bool:
    latest = (
        consent_history(customer=target.customer)
        .filter(purpose=target.purpose)
        .values_list("action", flat=True)
        .first()
    )
    return latest == ConsentRecord.Action.WITHDRAWN


def unsubscribe_record(*, target: UnsubscribeTarget, request: HttpRequest, one_click: bool) -> bool:
    """Record the withdrawal unless the latest record already is one; True when written."""
    if _already_withdrawn(target):
        return False
    consent_record_append(
        client=target.client,
        customer=target.customer,
        purpose_code=target.purpose.code,
        action=ConsentRecord.Action.WITHDRAWN,
        source=ConsentRecord.Source.UNSUBSCRIBE_LINK,
        evidence=Evidence.from_request(
            request,
            url=request.build_absolute_uri(),
            form_id="list-unsubscribe-one-click" if one_click else "unsubscribe-page",
        ),
        details={"channel": target.purpose.channel, "one_click": one_click},
    )
    return True


# --------------------------------------------------------------------------------------------
# The page


def _mask(value: str) -> str:
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if len(value) > 4:
        return value[:2] + "*" * (len(value) - 4) + value[-2:]
    return ""


def _contact(target: UnsubscribeTarget) -> str:
    customer = target.customer
    if target.purpose.channel == "email" and customer.email:
        return _mask(customer.email)
    if target.purpose.channel in ("sms", "messenger") and customer.phone:
        return _mask(customer.phone)
    return ""


def _page(request: HttpRequest, target: UnsubscribeTarget, state: str) -> HttpResponse:
    response = render(
        request,
        "consent/unsubscribe.html",
        {
            "state": state,
            "operator": target.client.legal_name or target.client.name,
            "purpose": target.purpose,
            "channel_label": CHANNEL_LABELS.get(target.purpose.channel, target.purpose.name),
            "contact": _contact(target),
        },
    )
    return _private(response)


def _private(response: HttpResponse) -> HttpResponse:
    # The URL carries a personal token: keep it out of referrers and search indexes.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@csrf_exempt
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe_view(request: HttpRequest, token: str) -> HttpResponse:
    target = unsubscribe_target(token)
    if target is None:
        return _private(render(request, "consent/unsubscribe_invalid.html", status=400))
    if request.method != "POST":
        state = "withdrawn" if _already_withdrawn(target) else "confirm"
        return _page(request, target, state)
    one_click = request.POST.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    written = unsubscribe_record(target=target, request=request, one_click=one_click)
    if one_click:
        return _private(HttpResponse("Вы отписаны.", content_type="text/plain; charset=utf-8"))
    return _page(request, target, "done" if written else "withdrawn")


urlpatterns = [
    path("u/<str:token>/", unsubscribe_view, name="unsubscribe"),
]
