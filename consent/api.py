"""Consent API: record grants and withdrawals (one or a batch), read a customer's consents.

Every record is checked and chained by consent.services (consent_record_build, then one
consent_records_save for the batch); this module checks the shape of the input with a light
per-row function, resolves the key's client's customers and text versions in bulk, and decides
what a batch commits (all or nothing, or ``?partial=true``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.urls import re_path
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agency.api import ApiError, request_client
from agency.audit import audit_log, request_ip
from agency.parsers import JSONParser, parse_moment
from agency.tenancy import get_scoped_object_or_404
from clients.api import ClientAccessPermission
from clients.bulk import (
    NOT_AN_OBJECT,
    PARTIAL_PARAMETER,
    REQUIRED,
    UNKNOWN_FIELD,
    VALUE_SHOWN,
    RejectedRow,
    RowError,
    bulk_request,
    bulk_response,
    bulk_result_schema,
    request_json,
)
from clients.models import Client, Customer

from .models import ConsentPurpose, ConsentRecord, ConsentText
from .selectors import consent_current_state, consent_history
from .services import (
    ConsentError,
    Evidence,
    consent_record_build,
    consent_records_save,
)

# ---------------------------------------------------------------------------------------------
# Serializers: the documented input shape and the output


class EvidenceSerializer(serializers.Serializer):
    ip = serializers.IPAddressField(required=False, allow_null=True, help_text="IP субъекта")
    user_agent = serializers.CharField(required=False, allow_blank=True, max_length=500)
    url = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, help_text="Страница с формой"
    )
    form_id = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ConsentInputSerializer(serializers.Serializer):
    """One grant or withdrawal (documentation; validation is :func:`parse_consent_row`)."""

    customer_external_id = serializers.CharField(
        required=False, max_length=100, help_text="Внешний id покупателя клиента (или subject_id)"
    )
    subject_id = serializers.CharField(
        required=False, max_length=64, help_text="Анонимный cookie-субъект (или покупатель)"
    )
    purpose = serializers.SlugField(help_text="Код цели: email_marketing, sms_marketing, …")
    action = serializers.ChoiceField(
        choices=[ConsentRecord.Action.GRANTED.value, ConsentRecord.Action.WITHDRAWN.value]
    )
    at = serializers.DateTimeField(
        required=False,
        help_text="ISO 8601; без смещения — часовой пояс клиента; по умолчанию — сейчас",
    )
    source = serializers.ChoiceField(
        choices=ConsentRecord.Source.choices, required=False, default=ConsentRecord.Source.API
    )
    text_version = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Опубликованная версия текста согласия; по умолчанию последняя опубликованная",
    )
    evidence = EvidenceSerializer(required=False)


class ConsentRecordSerializer(serializers.ModelSerializer):
    """One line of the ledger as proof: what, when, how, under which text version."""

    purpose = serializers.CharField(source="purpose.code", read_only=True, allow_null=True)
    customer_external_id = serializers.CharField(
        source="customer.external_id", read_only=True, allow_null=True
    )
    text_version = serializers.IntegerField(source="text.version", read_only=True, allow_null=True)
    evidence = serializers.SerializerMethodField()

    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "purpose",
            "action",
            "at",
            "recorded_at",
            "source",
            "text_version",
            "customer_external_id",
            "subject_id",
            "evidence",
            "hash",
        ]
        read_only_fields = fields

    @extend_schema_field(EvidenceSerializer)
    def get_evidence(self, record: ConsentRecord) -> dict[str, Any]:
        return {
            "ip": record.ip,
            "user_agent": record.user_agent,
            "url": record.url,
            "form_id": record.form_id,
        }


class ConsentStateSerializer(serializers.Serializer):
    purpose = serializers.CharField()
    name = serializers.CharField()
    granted = serializers.BooleanField()
    record_id = serializers.IntegerField(allow_null=True, help_text="Запись, которая решила")
    at = serializers.DateTimeField(allow_null=True)
    source = serializers.CharField(allow_null=True)
    text_version = serializers.IntegerField(allow_null=True)


class CustomerConsentsSerializer(serializers.Serializer):
    customer = inline_serializer(
        "ConsentCustomer",
        fields={"id": serializers.IntegerField(), "external_id": serializers.CharField()},
    )
    state = serializers.DictField(
        child=ConsentStateSerializer(), help_text="Текущее состояние по каждой цели (код → …)"
    )
    history = ConsentRecordSerializer(many=True, help_text="Все записи, новые сверху")


BULK_RESULT = bulk_result_schema(
    "ConsentBulkResult",
    records=inline_serializer(
        "ConsentBulkRecord",
        fields={"index": serializers.IntegerField(), "id": serializers.IntegerField()},
        many=True,
        help_text="Записи журнала, созданные пакетом (пусто, если ничего не записано)",
    ),
)

SINGLE_ERROR = inline_serializer(
    "ConsentRecordError",
    fields={
        "code": serializers.CharField(help_text="Код первой ошибки записи"),
        "message": serializers.CharField(),
        "field": serializers.CharField(required=False),
        "errors": serializers.JSONField(
            required=False,
            help_text="Ошибки записи: [{index: 0, field, code, message, value}]; для тела, "
            "которое не читается (invalid_json_value): {путь JSON: [сообщения]}",
        ),
    },
)


# ---------------------------------------------------------------------------------------------
# Row validation (light, per row; the service has the last word on the rules)

ROW_FIELDS = frozenset(
    {
        "customer_external_id",
        "subject_id",
        "purpose",
        "action",
        "at",
        "source",
        "text_version",
        "evidence",
    }
)
EVIDENCE_FIELDS = frozenset({"ip", "user_agent", "url", "form_id"})
EVIDENCE_LIMITS = {"user_agent": 500, "url": 1000, "form_id": 200}
FUTURE_TOLERANCE = timedelta(minutes=5)  # the service's own limit

# Where a refusal of the service points in the row.
SERVICE_ERROR_FIELDS = {
    "unknown_purpose": "purpose",
    "invalid_action": "action",
    "no_subject": "customer_external_id",
    "invalid_source": "source",
    "invalid_text": "text_version",
    "no_published_text": "purpose",
    "future_time": "at",
}


@dataclass
class ConsentRow:
    index: int
    purpose_code: str
    action: str
    source: str
    customer: Customer | None
    subject_id: str
    text: ConsentText | None
    at: datetime | None
    evidence: Evidence


@dataclass
class RowContext:
    """What every row is checked against, loaded once per request for the key's client."""

    client: Client
    purposes: frozenset[str]
    customers: dict[str, Customer]
    texts: dict[tuple[str, int], ConsentText]
    latest: dict[str, ConsentText]  # the latest published text per purpose code
    now: datetime

    @classmethod
    def load(cls, *, client: Client, rows: list[Any]) -> RowContext:
        external_ids = sorted(
            {
                _as_id(row.get("customer_external_id"))
                for row in rows
                if isinstance(row, dict) and _as_id(row.get("customer_external_id"))
            }
        )
        customers: dict[str, Customer] = {}
        for start in range(0, len(external_ids), 5000):
            for customer in Customer.objects.for_client(client).filter(
                external_id__in=external_ids[start : start + 5000]
            ):
                customers[customer.external_id] = customer
        texts = {
            (text.purpose.code, text.version): text
            for text in ConsentText.objects.for_client(client)
            .select_related("purpose")
            .order_by("version")
        }
        latest = {code: text for (code, _version), text in texts.items() if text.is_published}
        return cls(
            client=client,
            purposes=frozenset(ConsentPurpose.objects.values_list("code", flat=True)),
            customers=customers,
            texts=texts,
            latest=latest,
            now=timezone.now(),
        )


def _as_id(value: Any) -> str:
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return ""


def _short(value: Any) -> str:
    return str(value)[:VALUE_SHOWN]


def _parse_at(value: Any, tz) -> tuple[datetime | None, str]:
    """The row's time, or None and the reason (agency.parsers.parse_moment, the one reading)."""
    try:
        return parse_moment(value, tz), ""
    except ValueError as exc:
        return None, str(exc)


def _parse_evidence(value: Any, index: int) -> tuple[Evidence, list[RowError]]:
    if value is None:
        return Evidence(), []
    if not isinstance(value, dict):
        return Evidence(), [
            RowError(
                index,
                "evidence",
                "invalid_evidence",
                gettext("evidence — JSON-объект."),
                _short(value),
            )
        ]
    errors = [
        RowError(index, f"evidence.{key}", "unknown_field", UNKNOWN_FIELD)
        for key in value
        if key not in EVIDENCE_FIELDS
    ]
    ip = value.get("ip")
    if ip in (None, ""):
        ip = None
    else:
        try:
            ip = str(ipaddress.ip_address(str(ip).strip()))
        except ValueError:
            errors.append(
                RowError(
                    index,
                    "evidence.ip",
                    "invalid_ip",
                    gettext("Некорректный IP-адрес."),
                    _short(ip),
                )
            )
            ip = None
    texts = {}
    for name, limit in EVIDENCE_LIMITS.items():
        raw = value.get(name)
        if raw is None:
            texts[name] = ""
        elif isinstance(raw, str):
            texts[name] = raw[:limit]
        else:
            errors.append(
                RowError(
                    index, f"evidence.{name}", "invalid_evidence", gettext("Ожидается строка."), ""
                )
            )
            texts[name] = ""
    return Evidence(ip=ip, **texts), errors


def parse_consent_row(raw: Any, index: int, ctx: RowContext) -> tuple[ConsentRow | None, list]:
    """Check one input object; a ConsentRow to write, or the row's errors (all of them)."""
    if isinstance(raw, RejectedRow):  # a value the body reader refused
        return None, list(raw.errors)
    if not isinstance(raw, dict):
        return None, [RowError(index, "", "invalid_row", NOT_AN_OBJECT, _short(raw))]
    errors = [
        RowError(index, key, "unknown_field", UNKNOWN_FIELD) for key in raw if key not in ROW_FIELDS
    ]

    customer = None
    raw_customer = raw.get("customer_external_id")
    external_id = _as_id(raw_customer)
    if raw_customer not in (None, "") and not external_id:
        errors.append(
            RowError(
                index,
                "customer_external_id",
                "invalid_customer_external_id",
                gettext("Ожидается непустая строка."),
                _short(raw_customer),
            )
        )
    elif external_id:
        customer = ctx.customers.get(external_id)
        if customer is None:
            errors.append(
                RowError(
                    index,
                    "customer_external_id",
                    "unknown_customer",
                    gettext("Покупатель с таким внешним id не найден."),
                    external_id[:100],
                )
            )
    subject_id = raw.get("subject_id")
    if subject_id in (None, ""):
        subject_id = ""
    elif not isinstance(subject_id, str) or not (0 < len(subject_id.strip()) <= 64):
        errors.append(
            RowError(
                index,
                "subject_id",
                "invalid_subject_id",
                gettext("subject_id — строка до 64 символов."),
                _short(subject_id),
            )
        )
        subject_id = ""
    else:
        subject_id = subject_id.strip()
    if raw_customer in (None, "") and raw.get("subject_id") in (None, ""):
        errors.append(
            RowError(
                index,
                "customer_external_id",
                "missing_subject",
                gettext("Нужен customer_external_id или subject_id."),
            )
        )

    purpose = raw.get("purpose")
    if purpose in (None, ""):
        errors.append(RowError(index, "purpose", "required", REQUIRED))
    elif not isinstance(purpose, str) or purpose not in ctx.purposes:
        errors.append(
            RowError(
                index,
                "purpose",
                "unknown_purpose",
                gettext("Неизвестная цель; есть: %(purposes)s.")
                % {"purposes": ", ".join(sorted(ctx.purposes))},
                _short(purpose),
            )
        )
        purpose = None

    action = raw.get("action")
    if action in (None, ""):
        errors.append(RowError(index, "action", "required", REQUIRED))
    elif action not in (ConsentRecord.Action.GRANTED, ConsentRecord.Action.WITHDRAWN):
        errors.append(
            RowError(
                index, "action", "invalid_action", gettext("granted или withdrawn."), _short(action)
            )
        )

    at = None
    if raw.get("at") not in (None, ""):
        at, reason = _parse_at(raw["at"], ctx.client.tzinfo)
        if at is None:
            errors.append(
                RowError(
                    index,
                    "at",
                    "invalid_time",
                    gettext("Ожидается дата-время ISO 8601: %(reason)s.") % {"reason": reason},
                    _short(raw["at"]),
                )
            )
        elif at > ctx.now + FUTURE_TOLERANCE:
            errors.append(
                RowError(
                    index,
                    "at",
                    "future_time",
                    gettext("Время согласия в будущем."),
                    raw["at"][:100],
                )
            )

    source = raw.get("source") or ConsentRecord.Source.API
    if source not in ConsentRecord.Source.values:
        errors.append(
            RowError(
                index,
                "source",
                "invalid_source",
                gettext("Источник: %(sources)s.")
                % {"sources": ", ".join(ConsentRecord.Source.values)},
                _short(source),
            )
        )

    text = None
    version = raw.get("text_version")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            errors.append(
                RowError(
                    index,
                    "text_version",
                    "invalid_text_version",
                    gettext("Ожидается номер версии (целое ≥ 1)."),
                    _short(version),
                )
            )
        elif purpose:
            text = ctx.texts.get((purpose, version))
            if text is None or not text.is_published:
                errors.append(
                    RowError(
                        index,
                        "text_version",
                        "unknown_text_version",
                        gettext(
                            "Нет опубликованной версии %(version)s текста для цели %(purpose)s."
                        )
                        % {"version": version, "purpose": purpose},
                        str(version),
                    )
                )
    elif purpose and purpose in ctx.latest:
        text = ctx.latest[purpose]  # what the service would pick, without a query per row
    elif purpose and action == ConsentRecord.Action.GRANTED:
        errors.append(
            RowError(
                index,
                "purpose",
                "no_published_text",
                gettext(
                    "Нет опубликованного текста согласия для цели %(purpose)s: "
                    "согласие не доказуемо."
                )
                % {"purpose": purpose},
                purpose,
            )
        )

    evidence, evidence_errors = _parse_evidence(raw.get("evidence"), index)
    errors.extend(evidence_errors)
    if errors:
        return None, errors
    return (
        ConsentRow(
            index=index,
            purpose_code=purpose,
            action=action,
            source=source,
            customer=customer,
            subject_id=subject_id,
            text=text,
            at=at,
            evidence=evidence,
        ),
        [],
    )


@dataclass
class BatchResult:
    total: int
    committed: bool
    records: list[tuple[int, ConsentRecord]]
    errors: list[RowError]

    def as_dict(self) -> dict[str, Any]:
        return {
            "committed": self.committed,
            "total": self.total,
            "created": len(self.records) if self.committed else 0,
            "rejected": len({e.index for e in self.errors}),
            "records": [{"index": i, "id": r.pk} for i, r in self.records]
            if self.committed
            else [],
            "errors": [e.as_dict() for e in self.errors],
        }


class _Rollback(Exception):
    pass


def consent_batch_record(*, client: Client, items: list[Any], partial: bool) -> BatchResult:
    """Validate every row, then append the good ones through the service in one transaction.

    All or nothing unless ``partial``: one bad row (by shape or refused by the service) and no
    record of the batch stays in the ledger.
    """
    ctx = RowContext.load(client=client, rows=items)
    rows: list[ConsentRow] = []
    errors: list[RowError] = []
    for index, raw in enumerate(items):
        row, row_errors = parse_consent_row(raw, index, ctx)
        if row is not None:
            rows.append(row)
        errors.extend(row_errors)
    if errors and not partial:
        return BatchResult(len(items), False, [], errors)
    built: list[tuple[int, ConsentRecord]] = []
    try:
        with transaction.atomic():
            for row in rows:
                try:
                    record = consent_record_build(
                        client=client,
                        purpose_code=row.purpose_code,
                        action=row.action,
                        source=row.source,
                        customer=row.customer,
                        subject_id=row.subject_id,
                        text=row.text,
                        at=row.at,
                        evidence=row.evidence,
                    )
                except ConsentError as exc:  # refused before it wrote anything
                    field = SERVICE_ERROR_FIELDS.get(exc.code, "")
                    errors.append(RowError(row.index, field, exc.code, str(exc)))
                    continue
                built.append((row.index, record))
            if errors and not partial:
                raise _Rollback
            consent_records_save([record for _index, record in built])
    except _Rollback:
        return BatchResult(len(items), False, [], sorted(errors, key=lambda e: e.index))
    return BatchResult(len(items), True, built, sorted(errors, key=lambda e: e.index))


# ---------------------------------------------------------------------------------------------
# Views


class ConsentRecordView(APIView):
    """``POST /api/v1/consents/``: one object, or a JSON array of up to BULK_MAX_RECORDS."""

    permission_classes = [ClientAccessPermission]
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="consents_record",
        summary=_("Записать согласия или их отзыв (одно или пакет)"),
        description=(
            "Тело — один объект или JSON-массив (до 10 000). Пакет — всё или ничего; с "
            "`?partial=true` корректные строки записываются, остальные возвращаются в `errors` "
            "с индексом и кодом: `unknown_customer`, `unknown_purpose`, `missing_subject`, "
            "`invalid_action`, `invalid_time`, `future_time`, `invalid_source`, "
            "`unknown_text_version`, `no_published_text`, `invalid_ip`, `unknown_field`, "
            "`required`, `invalid_row`. Каждая запись — новая строка журнала: отзыв не "
            "удаляет согласие, а пишется поверх."
        ),
        request=PolymorphicProxySerializer(
            component_name="ConsentInputOneOrMany",
            serializers=[ConsentInputSerializer, ConsentInputSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        parameters=[PARTIAL_PARAMETER],
        responses={
            201: OpenApiResponse(ConsentRecordSerializer, description="Одна запись создана"),
            200: OpenApiResponse(BULK_RESULT, description="Пакет записан (с partial — его часть)"),
            422: OpenApiResponse(BULK_RESULT, description="Пакет отклонён, ничего не записано"),
            400: OpenApiResponse(SINGLE_ERROR, description="Одна запись некорректна"),
            413: OpenApiResponse(description="Слишком много записей: too_many_records"),
        },
        tags=["consents"],
    )
    def post(self, request: Request) -> Response:
        client = request_client(request)
        data = request_json(request)
        if isinstance(data, list):
            return self._bulk(request, client)
        if not isinstance(data, dict):
            raise ApiError("invalid_body", _("Тело запроса — JSON-объект или массив объектов."))
        result = consent_batch_record(client=client, items=[data], partial=False)
        record = result.records[0][1] if result.committed and result.records else None
        self._audit(request, client, mode="single", result=result, record=record)
        if record is None:
            first = result.errors[0]
            raise ApiError(
                first.code,
                first.message,
                extra={"field": first.field, "errors": [e.as_dict() for e in result.errors]},
            )
        return Response(ConsentRecordSerializer(record).data, status=status.HTTP_201_CREATED)

    def _bulk(self, request: Request, client: Client) -> Response:
        items, partial = bulk_request(request)
        result = consent_batch_record(client=client, items=items, partial=partial)
        self._audit(request, client, mode="bulk", result=result, partial=partial)
        return bulk_response(result.as_dict())

    @staticmethod
    def _audit(request, client, *, mode, result, partial=False, record=None) -> None:
        body = result.as_dict()
        audit_log(
            action="consents_recorded",
            source="api",
            actor=request.user,
            actor_label=str(request.user),
            client=client,
            obj=record,
            details={
                "mode": mode,
                "partial": partial,
                "committed": result.committed,
                "total": body["total"],
                "created": body["created"],
                "rejected": body["rejected"],
            },
            ip=request_ip(request),
        )


class CustomerConsentsView(APIView):
    """``GET /api/v1/customers/{id}/consents/``: the person's ledger and current state."""

    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="customer_consents",
        summary=_("История согласий покупателя и текущее состояние по целям"),
        responses={200: CustomerConsentsSerializer, 404: OpenApiResponse(description="Не найден")},
        tags=["consents"],
    )
    def get(self, request: Request, pk: int) -> Response:
        customer = get_scoped_object_or_404(Customer, request_client(request), pk=pk)
        history = list(consent_history(customer=customer).select_related("customer"))
        by_id = {record.pk: record for record in history}
        state = {}
        for code, entry in consent_current_state(customer=customer).items():
            record = by_id.get(entry["record_id"])
            state[code] = {
                **entry,
                "source": record.source if record else None,
                "text_version": record.text.version if record and record.text_id else None,
            }
        body = {
            "customer": {"id": customer.pk, "external_id": customer.external_id},
            "state": state,
            "history": history,
        }
        return Response(CustomerConsentsSerializer(body).data)


# Regex routes on purpose: the tenant-isolation walk (tests/clients/test_tenant_isolation.py)
# fills ``(?P<pk>…)`` of ``^customers/`` routes with another client's customer id.
urlpatterns = [
    re_path(r"^consents/$", ConsentRecordView.as_view(), name="consents"),
    re_path(
        r"^customers/(?P<pk>[0-9]+)/consents/$",
        CustomerConsentsView.as_view(),
        name="customer-consents",
    ),
]
