"""CRM webhooks: Bitrix24 and amoCRM contact and deal events, upserted as customers and orders.

Both CRMs post ``application/x-www-form-urlencoded`` with PHP-style nested keys
(``data[FIELDS][ID]=1``, ``contacts[add][0][name]=...``); a JSON body of the same nested shape is
accepted too. The body is turned into nested dicts and lists (:func:`parse_php_form`), mapped to
records by pure functions (:func:`bitrix24_to_records`, :func:`amocrm_to_records`) and written by
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
  must equal the client's ``webhook_secret``.
- amoCRM: its webhooks carry no signature, so the secret rides in the URL:
  ``.../webhooks/amocrm/?client=<slug>&secret=<webhook_secret>``.
"""

from __future__ import annotations

import copy
import hmac
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.urls import path
from django.utils.datastructures import MultiValueDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError, Throttled
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from agency.api import ApiError
from agency.audit import request_ip
from agency.errors import ServiceError

from .models import Client, CrmDeal
from .services import crm_webhook_ingest

logger = logging.getLogger(__name__)

BITRIX24 = CrmDeal.Crm.BITRIX24.value
AMOCRM = CrmDeal.Crm.AMOCRM.value
BITRIX24_PREFIX = CrmDeal.EXTERNAL_ID_PREFIXES[CrmDeal.Crm.BITRIX24]
AMOCRM_PREFIX = CrmDeal.EXTERNAL_ID_PREFIXES[CrmDeal.Crm.AMOCRM]

# --------------------------------------------------------------------------------------------
# PHP-style form parsing

MAX_KEY_DEPTH = 32  # PHP's max_input_nesting_level is 64; CRM payloads need 7
_BRACKETED_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class FormParseError(ServiceError, ValueError):
    """A form key nested deeper than :data:`MAX_KEY_DEPTH`."""

    default_code = "invalid_body"

    def __init__(self, message: str):
        super().__init__(message=message)


def _key_segments(key: str) -> list[str]:
    """``a[b][0][]`` -> ``["a", "b", "0", ""]``; a key not of that form is one plain name."""
    match = _BRACKETED_KEY.fullmatch(key)
    if match is None:
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _next_index(node: dict[str, Any]) -> str:
    """PHP's ``a[]=``: one past the largest integer key so far."""
    indexes = [int(k) for k in node if k.isdigit()]
    return str(max(indexes) + 1) if indexes else "0"


def _pairs(data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    if isinstance(data, MultiValueDict):  # a form: every value of a repeated key, in order
        for key, values in data.lists():
            for value in values:
                yield key, value
    else:  # a JSON object: lists are values, not repeats
        for key, value in data.items():
            yield key, copy.deepcopy(value)


def _listify(value: Any) -> Any:
    """Objects keyed exactly 0..n-1 become lists, as PHP's json_encode writes them."""
    if isinstance(value, dict):
        items = {key: _listify(item) for key, item in value.items()}
        if items and set(items) == {str(i) for i in range(len(items))}:
            return [items[str(i)] for i in range(len(items))]
        return items
    if isinstance(value, list):
        return [_listify(item) for item in value]
    return value


def parse_php_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat bracketed keys -> nested dicts and lists, the way PHP builds ``$_POST``.

    ``a[b][0][c]=x`` gives ``{"a": {"b": [{"c": "x"}]}}``. As in PHP: a repeated key keeps its
    last value, ``a[]`` appends, and a later key replaces an earlier value it has to nest into.
    Objects keyed 0..n-1 become lists (what ``json_encode($_POST)`` would show), so a form body
    and a JSON body of the same shape map through the same code. Keys that are not of the
    bracketed form are kept as they are; JSON values pass through unchanged.

    Written here rather than taken from a library: the port of JS ``qs`` (qs-codec) differs from
    PHP where CRM payloads need it (depth limit 5, repeated keys combined into lists, list
    indexes over 20 turned into object keys).
    """
    root: dict[str, Any] = {}
    for key, value in _pairs(data):
        segments = _key_segments(str(key))
        if len(segments) > MAX_KEY_DEPTH:
            raise FormParseError(f"ключ вложен глубже {MAX_KEY_DEPTH} уровней: {key[:100]!r}")
        node = root
        for segment in segments[:-1]:
            if segment == "":
                segment = _next_index(node)
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        last = segments[-1]
        node[_next_index(node) if last == "" else last] = value
    return _listify(root)


# --------------------------------------------------------------------------------------------
# Small readers shared by both mappings


def _items(value: Any) -> list[Any]:
    """A list, or an object keyed by indexes or ids (``{"5": ...}``), as a list of its values."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return []


def _text(value: Any) -> str:
    """A scalar as stripped text; anything else (missing, an object) as ""."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()


def _unix_to_iso(value: Any) -> str | None:
    """amoCRM sends Unix timestamps; the pipeline reads ISO 8601. Garbage is passed on as it
    is, so that the pipeline rejects the row with its reason instead of us guessing."""
    text = _text(value)
    if not text:
        return None
    if not text.isdigit():
        return text
    try:
        return datetime.fromtimestamp(int(text), tz=UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # beyond the years datetime can hold
        return text


def _skip(entity: str, entity_id: Any, reason: str) -> dict[str, str]:
    return {"entity": entity, "id": _text(entity_id), "reason": reason}


def _drop_none(record: dict[str, Any]) -> dict[str, Any]:
    """A field the CRM did not send is left out: the pipeline then keeps the stored value."""
    return {key: value for key, value in record.items() if value not in (None, "")}


# --------------------------------------------------------------------------------------------
# Bitrix24

B24_CONTACT_EVENTS = ("ONCRMCONTACTADD", "ONCRMCONTACTUPDATE")
B24_DEAL_EVENTS = ("ONCRMDEALADD", "ONCRMDEALUPDATE")
B24_DELETE_EVENTS = ("ONCRMCONTACTDELETE", "ONCRMDEALDELETE")
B24_CONTACT_DATA_FIELDS = ("NAME", "LAST_NAME", "EMAIL", "PHONE", "ADDRESS_CITY", "DATE_CREATE")
_B24_CATEGORY_PREFIX = re.compile(r"^C\d+:")


def _b24_first_multifield(value: Any) -> str | None:
    """EMAIL/PHONE are lists of ``{"VALUE": ..., "VALUE_TYPE": "WORK", ...}``; the first filled
    one is the contact's."""
    for item in _items(value):
        text = _text(item.get("VALUE")) if isinstance(item, dict) else _text(item)
        if text:
            return text
    return None


def _b24_deal_status(fields: Mapping[str, Any]) -> str:
    """WON is won, LOSE/APOLOGY lost (also in other pipelines: ``C1:WON``); custom final stages
    are told by STAGE_SEMANTIC_ID (S success, F failure). Anything else is still open."""
    stage = _B24_CATEGORY_PREFIX.sub("", _text(fields.get("STAGE_ID")).upper())
    semantic = _text(fields.get("STAGE_SEMANTIC_ID")).upper()
    if stage == "WON" or semantic == "S":
        return CrmDeal.Status.WON
    if stage in ("LOSE", "APOLOGY") or semantic == "F":
        return CrmDeal.Status.LOST
    return CrmDeal.Status.OPEN


def _b24_contact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return _drop_none(
        {
            "external_id": BITRIX24_PREFIX + _text(fields.get("ID")),
            "first_name": _text(fields.get("NAME")),
            "last_name": _text(fields.get("LAST_NAME")),
            "email": _b24_first_multifield(fields.get("EMAIL")),
            "phone": _b24_first_multifield(fields.get("PHONE")),
            "city": _text(fields.get("ADDRESS_CITY")),
            "first_seen": _text(fields.get("DATE_CREATE")),
            "source": BITRIX24,
        }
    )


def _b24_deal(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a deal event says about the deal (see ``crm_webhook_ingest``); absent = not sent."""
    contact_id = _text(fields.get("CONTACT_ID"))
    if contact_id in ("", "0"):
        contact_id = next((_text(c) for c in _items(fields.get("CONTACT_IDS")) if _text(c)), "")
    return _drop_none(
        {
            "deal_id": _text(fields.get("ID")),
            "stage": _text(fields.get("STAGE_ID")),
            "status": _b24_deal_status(fields),
            "contact_id": "" if contact_id == "0" else contact_id,
            "amount": _text(fields.get("OPPORTUNITY")),
            "currency": _text(fields.get("CURRENCY_ID")).upper(),
            # CLOSEDATE of a closed deal is its close date; the order falls back to DATE_CREATE.
            "closed_at": _text(fields.get("CLOSEDATE")),
            "created_at": _text(fields.get("DATE_CREATE")),
        }
    )


def _records() -> dict[str, list[dict[str, Any]]]:
    return {"customers": [], "deals": [], "links": [], "skipped": []}


def bitrix24_to_records(payload: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One Bitrix24 outbound event -> ``{"customers", "deals", "links", "skipped"}``.

    Bitrix24 itself sends only ``data[FIELDS][ID]`` (its integrations then call crm.contact.get);
    the entity's fields, when the sender includes them under ``data[FIELDS]`` in the shape
    crm.contact.get / crm.deal.get return, are mapped: a contact to a customer record, a deal to
    what it says about the deal (stage, status, CONTACT_ID, OPPORTUNITY...). Whether a deal is an
    order is decided when it is written, against what earlier hooks said (its contact may come
    later). An event without fields is skipped with the reason, as are deletions (erasure goes
    through a data-subject request) and other events. Bitrix24 contacts carry no deal links.
    """
    result = _records()
    event = _text(payload.get("event")).upper()
    data = payload.get("data")
    fields = data.get("FIELDS") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or not _text(fields.get("ID")):
        result["skipped"].append(_skip("event", event, "нет data[FIELDS][ID]"))
        return result
    entity_id = fields.get("ID")
    if event in B24_CONTACT_EVENTS:
        if not any(key in fields for key in B24_CONTACT_DATA_FIELDS):
            result["skipped"].append(
                _skip(
                    "contact",
                    entity_id,
                    "в событии только ID контакта, нет полей (NAME, EMAIL, PHONE)",
                )
            )
        else:
            result["customers"].append(_b24_contact(fields))
    elif event in B24_DEAL_EVENTS:
        if not _text(fields.get("STAGE_ID")):
            result["skipped"].append(
                _skip(
                    "deal",
                    entity_id,
                    "в событии только ID сделки, нет полей (STAGE_ID, OPPORTUNITY, CONTACT_ID)",
                )
            )
        else:
            result["deals"].append(_b24_deal(fields))
    elif event in B24_DELETE_EVENTS:
        result["skipped"].append(
            _skip(
                event,
                entity_id,
                "удаление в CRM не удаляет данные: для этого есть запрос субъекта ПДн",
            )
        )
    else:
        result["skipped"].append(_skip(event or "event", entity_id, "событие не обрабатывается"))
    return result


# --------------------------------------------------------------------------------------------
# amoCRM

AMO_WON = "142"  # system statuses, the same ids in every pipeline
AMO_LOST = "143"
AMO_CONTACT_ACTIONS = ("add", "update")
AMO_LEAD_ACTIONS = ("add", "update", "status")


def _amo_custom_field(entity: Mapping[str, Any], code: str) -> str | None:
    """``custom_fields[i][code]=PHONE``, ``custom_fields[i][values][0][value]=...``."""
    for field in _items(entity.get("custom_fields")):
        if not isinstance(field, dict) or _text(field.get("code")).upper() != code:
            continue
        for item in _items(field.get("values")):
            text = _text(item.get("value")) if isinstance(item, dict) else _text(item)
            if text:
                return text
    return None


def _amo_contact(contact: Mapping[str, Any]) -> dict[str, Any]:
    # amoCRM's contact has one ``name`` (the full name, in whatever order the manager typed it);
    # first_name/last_name are used when sent. The full name is not split by guessing.
    first_name = _text(contact.get("first_name")) or _text(contact.get("name"))
    return _drop_none(
        {
            "external_id": AMOCRM_PREFIX + _text(contact.get("id")),
            "first_name": first_name,
            "last_name": _text(contact.get("last_name")),
            "email": _amo_custom_field(contact, "EMAIL"),
            "phone": _amo_custom_field(contact, "PHONE"),
            "first_seen": _unix_to_iso(contact.get("date_create") or contact.get("created_at")),
            "source": AMOCRM,
        }
    )


def _amo_linked_lead_ids(contact: Mapping[str, Any]) -> list[str]:
    """``linked_leads_id[<lead id>][ID]=<lead id>`` (an object keyed by lead id)."""
    linked = contact.get("linked_leads_id")
    ids: list[str] = []
    if isinstance(linked, dict):
        for key, value in linked.items():
            ids.append(_text(value.get("ID")) if isinstance(value, dict) else _text(key))
    else:
        ids.extend(_text(v.get("ID")) if isinstance(v, dict) else _text(v) for v in _items(linked))
    return [i for i in ids if i]


def _amo_lead(lead: Mapping[str, Any]) -> dict[str, Any]:
    """What a lead hook says about the lead; absent = not sent. Its contact only when the sender
    adds ``main_contact_id``: amoCRM's own lead hooks do not carry it."""
    status_id = _text(lead.get("status_id"))
    status = None
    if status_id:
        status = {AMO_WON: CrmDeal.Status.WON, AMO_LOST: CrmDeal.Status.LOST}.get(
            status_id, CrmDeal.Status.OPEN
        )
    return _drop_none(
        {
            "deal_id": _text(lead.get("id")),
            "stage": status_id,
            "status": status,
            "contact_id": _text(lead.get("main_contact_id")),
            "amount": _text(lead.get("price")),
            "closed_at": _unix_to_iso(lead.get("closed_at")),
            "created_at": _unix_to_iso(lead.get("date_create") or lead.get("created_at")),
        }
    )


def amocrm_to_records(payload: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One amoCRM webhook -> ``{"customers", "deals", "links", "skipped"}``.

    Contacts added or updated become customers (companies, ``type=company``, are skipped), and
    each lead a contact lists in ``linked_leads_id`` becomes a link lead -> contact. Leads (add,
    update, status) are mapped to what they say about the lead: status 142 won, 143 lost, any
    other open; amount = ``price``; ``closed_at`` and the creation time (``date_create``). A won
    lead becomes an order when it is written, once a link to a known contact exists, from this
    hook or an earlier or later one: amoCRM's lead hooks never carry the contact.
    """
    result = _records()
    contacts = payload.get("contacts")
    contacts = contacts if isinstance(contacts, dict) else {}
    for action, entities in contacts.items():
        for contact in _items(entities):
            if not isinstance(contact, dict) or not _text(contact.get("id")):
                continue
            contact_id = _text(contact.get("id"))
            if action not in AMO_CONTACT_ACTIONS:
                result["skipped"].append(
                    _skip("contact", contact_id, f"действие {action} с контактом не обрабатывается")
                )
                continue
            if _text(contact.get("type")).lower() == "company":
                result["skipped"].append(_skip("company", contact_id, "компания, а не покупатель"))
                continue
            result["customers"].append(_amo_contact(contact))
            result["links"].extend(
                {"deal_id": lead_id, "contact_id": contact_id}
                for lead_id in _amo_linked_lead_ids(contact)
            )

    leads = payload.get("leads")
    leads = leads if isinstance(leads, dict) else {}
    for action, entities in leads.items():
        for lead in _items(entities):
            if not isinstance(lead, dict) or not _text(lead.get("id")):
                continue
            if action not in AMO_LEAD_ACTIONS:
                result["skipped"].append(
                    _skip("lead", lead.get("id"), f"действие {action} со сделкой не обрабатывается")
                )
                continue
            result["deals"].append(_amo_lead(lead))
    return result


# --------------------------------------------------------------------------------------------
# Views

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
    forms, and an amoCRM batch of contacts with custom fields passes it."""

    max_fields = 50_000

    def parse(self, stream, media_type=None, parser_context=None) -> MultiValueDict:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=self.max_fields)
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            raise ParseError(f"Тело формы не читается: {exc}") from exc
        data = MultiValueDict()
        for key, value in pairs:
            data.appendlist(key, value)
        return data


def _same_secret(given: Any, client: Client | None) -> bool:
    """Constant-time compare; no client, an empty secret or a non-text value never match."""
    expected = client.webhook_secret if client is not None else ""
    given_text = given if isinstance(given, str) else ""
    matches = hmac.compare_digest(given_text.encode(), expected.encode())
    return matches and client is not None and bool(expected)


REFUSED_MESSAGE = "Неверный секрет вебхука или неизвестный клиент."

WEBHOOK_RESULT = OpenApiResponse(
    description="Итог: customers и orders — {created, updated, rejected, errors: [{external_id, "
    "field, reason, value}]}; skipped — [{entity, id, reason}]: события и сделки, не ставшие "
    "записями, с причиной (например, выигранная сделка ждёт свой контакт).",
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
        if not isinstance(data, Mapping):
            raise ApiError("invalid_body", "Тело запроса — форма или JSON-объект.")
        return parse_php_form(data)

    def find_client(self, request: Request, given_secret: Any) -> Client:
        slug = request.query_params.get("client", "")
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

    def verify(self, request: Request, payload: dict[str, Any]) -> Client:
        raise NotImplementedError

    def to_records(self, payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        raise NotImplementedError

    def event_name(self, payload: dict[str, Any]) -> str:
        return ""

    def post(self, request: Request) -> Response:
        payload = self.read_payload(request)
        client = self.verify(request, payload)
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
        raise Throttled(wait, detail="Слишком много вебхуков от этого клиента; CRM повторит позже.")


_CLIENT_PARAM = OpenApiParameter(
    "client", OpenApiTypes.STR, required=True, description="Код (slug) клиента в платформе"
)
_BODY = {
    "application/x-www-form-urlencoded": OpenApiTypes.OBJECT,
    "application/json": OpenApiTypes.OBJECT,
}


@extend_schema(
    summary="Вебхук Битрикс24 (ONCRMCONTACTADD/UPDATE, ONCRMDEALADD/UPDATE)",
    description="Исходящий вебхук Битрикс24: event, data[FIELDS][...], auth[application_token]. "
    "Токен приложения должен совпадать с секретом вебхуков клиента.",
    parameters=[_CLIENT_PARAM],
    request=_BODY,
    responses={200: WEBHOOK_RESULT, 403: OpenApiResponse(description="invalid_webhook_secret")},
    auth=[],
)
class Bitrix24WebhookView(_CrmWebhookView):
    crm = BITRIX24

    def verify(self, request: Request, payload: dict[str, Any]) -> Client:
        auth = payload.get("auth")
        token = auth.get("application_token") if isinstance(auth, dict) else None
        return self.find_client(request, token)

    def to_records(self, payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return bitrix24_to_records(payload)

    def event_name(self, payload: dict[str, Any]) -> str:
        return _text(payload.get("event")).upper()


@extend_schema(
    summary="Вебхук amoCRM (контакты: add/update; сделки: add/update/status)",
    description="Вебхук amoCRM: contacts[add][0][...], leads[status][0][...]. amoCRM не "
    "подписывает вебхуки, поэтому секрет клиента передаётся в URL параметром secret.",
    parameters=[
        _CLIENT_PARAM,
        OpenApiParameter("secret", OpenApiTypes.STR, required=True, description="Секрет вебхуков"),
    ],
    request=_BODY,
    responses={200: WEBHOOK_RESULT, 403: OpenApiResponse(description="invalid_webhook_secret")},
    auth=[],
)
class AmoCrmWebhookView(_CrmWebhookView):
    crm = AMOCRM

    def verify(self, request: Request, payload: dict[str, Any]) -> Client:
        return self.find_client(request, request.query_params.get("secret"))

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


urlpatterns = [
    path("bitrix24/", Bitrix24WebhookView.as_view(), name="webhook-bitrix24"),
    path("amocrm/", AmoCrmWebhookView.as_view(), name="webhook-amocrm"),
]
