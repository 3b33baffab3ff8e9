"""CRM webhooks: Bitrix24 and amoCRM contact and deal events, upserted as customers and orders.

Both CRMs post ``application/x-www-form-urlencoded`` with PHP-style nested keys
(``data[FIELDS][ID]=1``, ``contacts[add][0][name]=...``); a JSON body of the same nested shape is
accepted too. The body is turned into nested dicts and lists (:func:`parse_php_form`), mapped to
records by pure functions (``integrations.bitrix24.formats.bitrix24_to_records``,
``integrations.amocrm.formats.amocrm_to_records``) and written by
``clients.services.crm_webhook_ingest``: contacts become customers through the one ingestion
pipeline (``ingest_records``, partial: a CRM cannot fix a batch, so good rows land and bad ones
are listed in the reply); deals and the deal -> contact links are remembered
(``clients.models.CrmDeal``), because the CRMs send the two halves in different hooks (amoCRM's
lead hooks never name the contact). A won deal becomes an order, through the same pipeline, as
soon as its contact is known as a customer, whichever hook came first; the reply's ``skipped``
says why the others are not orders yet.

External ids are prefixed with the CRM so they cannot collide with ids from a shop backend or a
CSV import: Bitrix24 contact and deal ``ID`` 17 become ``b24-17``; amoCRM contact and lead ``id``
17 become ``amo-17`` (customers and orders are separate tables, so one prefix serves both).

Verification (a 403 ``invalid_webhook_secret`` otherwise, the same for an unknown client, so
client slugs cannot be probed):

- Bitrix24: URL ``.../webhooks/bitrix24/?client=<slug>``; the body's ``auth[application_token]``
  must equal the client's ``webhook_secret``. Its events carry only ``data[FIELDS][ID]``: the
  contact or deal is read back through the client's REST webhook by a background task
  (``clients.services.crm_bitrix24_fetch``), so the reply comes at once.
- amoCRM: its webhooks carry no signature and amoCRM sends no custom header, so the secret
  rides in the URL's path: ``.../webhooks/amocrm/<slug>/<webhook_secret>/``. Every log that
  writes a request's path masks that segment (``agency.log_masking``). The former form
  ``.../webhooks/amocrm/?client=<slug>&secret=<secret>`` put the secret in the query string, and
  so in access logs; it is refused with a 400 ``webhook_url_changed`` that names the new form
  (its ``secret=`` is masked in the logs too).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.urls import path
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError, Throttled
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from agency.api import ApiError
from agency.audit import request_ip
from agency.parsers import JSONParser, check_form_text
from integrations.amocrm.formats import amocrm_to_records
from integrations.bitrix24.formats import bitrix24_to_records
from integrations.crm.forms import as_text, parse_php_form

from .models import Client, CrmDeal
from .services import crm_webhook_ingest

logger = logging.getLogger(__name__)

BITRIX24 = CrmDeal.Crm.BITRIX24.value
AMOCRM = CrmDeal.Crm.AMOCRM.value

DEFAULT_WEBHOOK_RATE = "600/minute"


class WebhookClientThrottle(SimpleRateThrottle):
    """Per verified client: one client's CRM cannot starve another's, and forged requests
    (not verified, so not counted) cannot use up a real client's quota. The rate is
    ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["webhook"]`` when set."""

    scope = "webhook"

    def get_rate(self) -> str:
        return self.THROTTLE_RATES.get(self.scope) or DEFAULT_WEBHOOK_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        client = getattr(request, "webhook_client", None)
        if client is None:
            return None  # checked again once the request is verified
        return self.cache_format % {"scope": self.scope, "ident": f"client:{client.pk}"}


class WebhookFormParser(FormParser):
    """Form bodies with room for a CRM batch: Django's 1000-field limit is meant for browser
    forms, and an amoCRM batch of contacts with custom fields passes it. A NUL character in a
    field is refused (400, naming it), as in every form the API reads."""

    max_fields = 50_000

    def parse(self, stream, media_type=None, parser_context=None) -> MultiValueDict:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=self.max_fields)
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            raise ParseError(_("Тело формы не читается: %(error)s") % {"error": exc}) from exc
        data = MultiValueDict()
        for key, value in pairs:
            data.appendlist(key, value)
        check_form_text(data)
        return data


def _same_secret(given: Any, client: Client | None) -> bool:
    """Constant-time compare; no client, an empty secret or a non-text value never match."""
    expected = client.webhook_secret if client is not None else ""
    given_text = given if isinstance(given, str) else ""
    matches = hmac.compare_digest(given_text.encode(), expected.encode())
    return matches and client is not None and bool(expected)


REFUSED_MESSAGE = gettext_lazy("Неверный секрет вебхука или неизвестный клиент.")

WEBHOOK_RESULT = OpenApiResponse(
    description="Итог: customers и orders — {created, updated, unchanged, rejected, errors: "
    "[{external_id, field, reason, value}]}; skipped — [{entity, id, reason}]: события и "
    "сделки, не ставшие записями, с причиной (например, выигранная сделка ждёт свой контакт); "
    "fetching — [{entity, id}]: контакты и сделки Битрикс24, названные только по ID, которые "
    "платформа читает через REST-вебхук клиента в фоне.",
)


class _CrmWebhookView(APIView):
    """Verify, map, ingest, reply. Subclasses say how to verify and how to map."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [WebhookClientThrottle]
    parser_classes = [JSONParser, WebhookFormParser]
    crm: str

    def read_payload(self, request: Request) -> dict[str, Any]:
        data = request.data
        payload = parse_php_form(data) if isinstance(data, Mapping) else None
        if not isinstance(payload, dict):  # also a form of keys 0..n-1 only: a list, not fields
            raise ApiError("invalid_body", _("Тело запроса — форма или JSON-объект с полями."))
        return payload

    def find_client(self, request: Request, slug: Any, given_secret: Any) -> Client:
        slug = slug if isinstance(slug, str) else ""
        client = Client.objects.filter(slug=slug, is_active=True).first() if slug else None
        if not _same_secret(given_secret, client):
            logger.warning(
                "%s webhook refused: bad secret or unknown client %r", self.crm, slug[:60]
            )
            raise ApiError(
                "invalid_webhook_secret",
                REFUSED_MESSAGE,
                status_code=status.HTTP_403_FORBIDDEN,
            )
        return client

    def verify(self, request: Request, payload: dict[str, Any], **url: str) -> Client:
        """The client the request is for, from the URL's keywords and the payload."""
        raise NotImplementedError

    def to_records(self, payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        raise NotImplementedError

    def event_name(self, payload: dict[str, Any]) -> str:
        return ""

    def post(self, request: Request, **url: str) -> Response:
        payload = self.read_payload(request)
        client = self.verify(request, payload, **url)
        request.webhook_client = client
        self.check_throttles(request)
        records = self.to_records(payload)
        reply = crm_webhook_ingest(
            client=client,
            crm=self.crm,
            records=records,
            event=self.event_name(payload),
            ip=request_ip(request),
        )
        return Response(reply, status=status.HTTP_200_OK)

    def throttled(self, request: Request, wait: float | None) -> None:
        raise Throttled(
            wait, detail=_("Слишком много вебхуков от этого клиента; CRM повторит позже.")
        )


_CLIENT_PARAM = OpenApiParameter(
    "client", OpenApiTypes.STR, required=True, description="Код (slug) клиента в платформе"
)
_BODY = {
    "application/x-www-form-urlencoded": OpenApiTypes.OBJECT,
    "application/json": OpenApiTypes.OBJECT,
}


@extend_schema(
    summary="Вебхук Битрикс24 (ONCRMCONTACTADD/UPDATE, ONCRMDEALADD/UPDATE)",
    description="Исходящий вебхук Битрикс24: event, data[FIELDS][ID], auth[application_token]. "
    "Токен приложения должен совпадать с секретом вебхуков клиента. Битрикс24 присылает только "
    "ID: контакт и сделку платформа читает сама (crm.contact.get, crm.deal.get) через входящий "
    "вебхук клиента (https://<портал>.bitrix24.ru/rest/<id>/<код>/, задаётся в админке), в "
    "фоне: ответ приходит сразу, с этими записями в fetching. Поля, пришедшие в data[FIELDS], "
    "записываются сразу.",
    parameters=[_CLIENT_PARAM],
    request=_BODY,
    responses={200: WEBHOOK_RESULT, 403: OpenApiResponse(description="invalid_webhook_secret")},
    auth=[],
)
class Bitrix24WebhookView(_CrmWebhookView):
    crm = BITRIX24

    def verify(self, request: Request, payload: dict[str, Any], **url: str) -> Client:
        auth = payload.get("auth")
        token = auth.get("application_token") if isinstance(auth, dict) else None
        return self.find_client(request, request.query_params.get("client", ""), token)

    def to_records(self, payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return bitrix24_to_records(payload)

    def event_name(self, payload: dict[str, Any]) -> str:
        return as_text(payload.get("event")).upper()


@extend_schema(
    summary="Вебхук amoCRM (контакты: add/update; сделки: add/update/status)",
    description="Вебхук amoCRM: contacts[add][0][...], leads[status][0][...]. amoCRM не "
    "подписывает вебхуки и не передаёт своих заголовков, поэтому секрет клиента — часть пути "
    "URL: /api/v1/webhooks/amocrm/<код клиента>/<секрет>/. В журналах доступа этот сегмент "
    "заменён на ***.",
    parameters=[
        OpenApiParameter(
            "client_slug",
            OpenApiTypes.STR,
            OpenApiParameter.PATH,
            description="Код (slug) клиента в платформе",
        ),
        OpenApiParameter(
            "secret",
            OpenApiTypes.STR,
            OpenApiParameter.PATH,
            description="Секрет вебхуков клиента (в журналах маскируется)",
        ),
    ],
    request=_BODY,
    responses={200: WEBHOOK_RESULT, 403: OpenApiResponse(description="invalid_webhook_secret")},
    auth=[],
)
class AmoCrmWebhookView(_CrmWebhookView):
    crm = AMOCRM

    def verify(self, request: Request, payload: dict[str, Any], **url: str) -> Client:
        return self.find_client(request, url.get("client_slug"), url.get("secret"))

    def to_records(self, payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return amocrm_to_records(payload)

    def event_name(self, payload: dict[str, Any]) -> str:
        names: Iterable[str] = (
            f"{entity}.{action}"
            for entity in ("contacts", "leads")
            if isinstance(payload.get(entity), dict)
            for action in payload[entity]
        )
        return ",".join(names)


AMOCRM_URL_FORM = "/api/v1/webhooks/amocrm/<код клиента>/<секрет>/"


@extend_schema(
    summary="Прежний адрес вебхука amoCRM (?client=&secret=): отказ 400 с новым адресом",
    description="Секрет в строке запроса попадал в журналы доступа; теперь он — часть пути: "
    f"{AMOCRM_URL_FORM}.",
    request=_BODY,
    responses={400: OpenApiResponse(description="webhook_url_changed")},
    auth=[],
    deprecated=True,
)
class AmoCrmOldUrlView(APIView):
    """The retired ``?client=&secret=`` form: refused before anything is read or verified."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        raise ApiError(
            "webhook_url_changed",
            _(
                "Адрес вебхука amoCRM изменился: секрет передаётся в пути, а не в параметрах "
                "запроса. Укажите в настройках вебхука amoCRM адрес %(url)s "
                "(готовый адрес — в карточке клиента в админке)."
            )
            % {"url": AMOCRM_URL_FORM},
        )


urlpatterns = [
    path("bitrix24/", Bitrix24WebhookView.as_view(), name="webhook-bitrix24"),
    path(
        "amocrm/<str:client_slug>/<str:secret>/",
        AmoCrmWebhookView.as_view(),
        name="webhook-amocrm",
    ),
    path("amocrm/", AmoCrmOldUrlView.as_view(), name="webhook-amocrm-old"),
]
