"""Audience API: ad cabinets (destinations), audiences, their sync runs and "sync now", and the
value-based bid modifiers of the client's Yandex audiences.

Views check shapes and call ``audiences.services``; the rules (hashing per platform, credentials,
a segment of the same client, one sync at a time, the value-bidding tier feature) live there and
come back as JSON errors ``{"code", "message", "field"}``.

Credentials are write-only: no serializer has a field that reads them, so neither a response
nor the schema's examples can carry a secret. Segments, destinations and suppression segments
given by id are looked up among the request's client's objects only: another client's id is
"not found", exactly like a missing one. Ids in paths use the ``str`` converter (as in
``segments.api``): anything that is not one of the client's objects gets the same JSON 404.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db.models import Model, OuterRef, Prefetch, QuerySet, Subquery
from django.http import HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from agency.api import ApiError, ClientScopedViewSetMixin, request_client
from agency.audit import audit_context
from agency.exports import csv_response
from clients.api import ClientAccessPermission
from segments.models import Segment

from .bidding import CSV_COLUMNS, bid_modifiers_rows, bidmodifiers_add_body
from .holdout import audience_holdout_check
from .models import HOLDOUT_MAX_PERCENT, Audience, Destination, SyncRun
from .services import (
    ACTIVE_RUN_STATUSES,
    audience_create,
    audience_next_sync,
    audience_sync_request,
    audience_update,
    bid_modifiers_for_client,
    destination_create,
    destination_update,
)

TAGS = ["audiences"]
ID_PARAMETER = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH)


_audited = functools.partial(audit_context, source="api")


ERROR_BODY = inline_serializer(
    "AudienceErrorBody",
    fields={
        "code": serializers.CharField(
            help_text="invalid_platform, invalid_hashing, invalid_credentials, "
            "name_taken, invalid_field, segment_not_found, destination_not_found, "
            "invalid_segment, invalid_suppression, invalid_lookalike_value, invalid_schedule, "
            "tier_feature_value_bidding; invalid (неверная форма, подробности в errors)"
        ),
        "message": serializers.CharField(),
        "field": serializers.CharField(
            allow_null=True, required=False, help_text="Поле запроса, к которому относится ошибка"
        ),
        "errors": serializers.DictField(required=False),
    },
)


class IdCursorPagination(CursorPagination):
    ordering = ("id",)
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


class SyncRunCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _lookup(model: type[Model], client: Any, value: Any, code: str, field: str) -> Any:
    """One of the client's objects by id; another client's id is "not found" (400, not 404:
    the id is a value in the body, not the resource of the URL)."""
    found = None
    if isinstance(value, int) and not isinstance(value, bool):
        found = model.objects.for_client(client).filter(pk=value).first()
    if found is None:
        message = {
            "segment_not_found": _("сегмент %(id)s не найден"),
            "destination_not_found": _("кабинет %(id)s не найден"),
        }[code] % {"id": value}
        raise ApiError(code, message, extra={"field": field})
    return found


# ---------------------------------------------------------------------------------------------
# Destinations

CREDENTIALS_HELP = (
    'Только для записи. Яндекс Аудитории: {"token": "<OAuth-токен>"}; VK Реклама и myTarget: '
    '{"client_id": "...", "client_secret": "..."[, "agency_client_name": "..."]}. '
    "Хранятся зашифрованными и никогда не возвращаются."
)


class DestinationSerializer(serializers.ModelSerializer):
    has_token = serializers.SerializerMethodField(
        help_text="Есть действующий доступ: OAuth-токен Яндекса или живой токен VK/myTarget"
    )
    country = serializers.CharField(
        read_only=True,
        help_text="Страна получателя данных (ISO 3166-1): страна оператора платформы, RU",
    )

    class Meta:
        model = Destination
        fields = [
            "id",
            "name",
            "platform",
            "hashing",
            "country",
            "is_active",
            "created_at",
            "has_token",
            "token_expires_at",
        ]
        read_only_fields = fields

    def get_has_token(self, obj: Destination) -> bool:
        if obj.platform == Destination.Platform.YANDEX_AUDIENCES:
            return bool(obj.credentials_encrypted)  # the token is the credential itself
        return bool(
            obj.token_encrypted and obj.token_expires_at and obj.token_expires_at > timezone.now()
        )


class DestinationInputSerializer(serializers.Serializer):
    """Shape only; hashing per platform and credentials are checked by audiences.services. The
    platform's address and the recipient's country are not inputs (see FIXED_FIELDS)."""

    name = serializers.CharField(max_length=200)
    platform = serializers.ChoiceField(choices=Destination.Platform.choices)
    credentials = serializers.JSONField(write_only=True, help_text=CREDENTIALS_HELP)
    hashing = serializers.ChoiceField(
        choices=Destination.Hashing.choices,
        required=False,
        help_text="По умолчанию: sha256 для Яндекса, md5 для VK Рекламы и myTarget",
    )
    is_active = serializers.BooleanField(required=False)

    def validate_credentials(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError(_("Учётные данные — JSON-объект."))
        return value


class DestinationUpdateInputSerializer(DestinationInputSerializer):
    """PATCH: every field optional; new credentials replace the stored ones."""

    platform = None  # a cabinet never changes platform: connect another one


# Fields a client may not choose, refused by name rather than ignored (a client that still sends
# them learns why): the platform's address is deployment configuration (SSRF: a client-chosen
# address would receive the platform token and the hashed identifiers), and the data recipient's
# country is the platform operator's.
FIXED_FIELDS = {
    "base_url": "Адрес API платформы задаётся настройкой развёртывания "
    "(YANDEX_AUDIENCES_BASE_URL, VK_ADS_BASE_URL, MYTARGET_BASE_URL), а не клиентом: "
    "уберите поле base_url из запроса.",
    "country": "Страна получателя определяется платформой (Яндекс и VK — российские "
    "компании), а не клиентом: уберите поле country из запроса.",
}


def _refuse_fixed_fields(data: Any) -> None:
    if not hasattr(data, "keys"):
        return  # not an object: the serializer refuses the shape
    for name, message in FIXED_FIELDS.items():
        if name in data:
            raise ApiError("invalid_field", message, field=name)


DESTINATION_EXAMPLES = [
    OpenApiExample(
        "Яндекс Аудитории",
        value={
            "name": "Яндекс: основной",
            "platform": "yandex_audiences",
            "credentials": {"token": "<OAuth-токен>"},
        },
        request_only=True,
    ),
    OpenApiExample(
        "VK Реклама",
        value={
            "name": "VK: агентский",
            "platform": "vk_ads",
            "hashing": "md5",
            "credentials": {"client_id": "<id>", "client_secret": "<secret>"},
        },
        request_only=True,
    ),
]


@extend_schema_view(
    list=extend_schema(summary=_("Рекламные кабинеты клиента"), tags=TAGS),
    retrieve=extend_schema(summary=_("Рекламный кабинет"), parameters=[ID_PARAMETER], tags=TAGS),
)
class DestinationViewSet(
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Ad cabinets of the key's client; create and update go through destination_create /
    destination_update (credentials encrypted, hashing rules, the data recipient)."""

    model = Destination
    serializer_class = DestinationSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = IdCursorPagination
    lookup_value_converter = "str"

    @extend_schema(
        summary=_("Подключить рекламный кабинет"),
        request=DestinationInputSerializer,
        examples=DESTINATION_EXAMPLES,
        responses={201: DestinationSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        _refuse_fixed_fields(request.data)
        data = DestinationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        destination = destination_create(client=self.client, **fields, **_audited(request))
        return Response(self.get_serializer(destination).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_("Изменить рекламный кабинет (новые учётные данные заменяют старые)"),
        request=DestinationUpdateInputSerializer,
        parameters=[ID_PARAMETER],
        responses={200: DestinationSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        destination = self.get_object()
        _refuse_fixed_fields(request.data)
        if "platform" in request.data:
            raise ApiError(
                "invalid_field",
                _("Платформу кабинета изменить нельзя: подключите новый кабинет."),
                extra={"field": "platform"},
            )
        data = DestinationUpdateInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        destination = destination_update(destination=destination, **fields, **_audited(request))
        return Response(self.get_serializer(destination).data)


# ---------------------------------------------------------------------------------------------
# Sync runs


class SyncRunSerializer(serializers.ModelSerializer):
    request_ids = serializers.ListField(
        child=serializers.CharField(), help_text="id запросов к платформе (для её поддержки)"
    )
    steps = serializers.ListField(child=serializers.CharField(), help_text="Журнал шагов")
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "audience",
            "status",
            "progress",
            "stage",
            "source",
            "members",
            "held_back_erased",
            "held_back_consent",
            "suppressed",
            "held_out",
            "no_identifier",
            "exported",
            "uploaded",
            "added",
            "removed",
            "remote_status",
            "matched_percent",
            "request_ids",
            "steps",
            "message",
            "platform_error",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "status_url",
        ]
        read_only_fields = fields

    def get_status_url(self, obj: SyncRun) -> str:
        return reverse("sync-run-detail", kwargs={"pk": obj.pk})


@extend_schema_field(OpenApiTypes.STR)
class RunStatusField(serializers.CharField):
    """The status as a plain string in the summary: the enum is documented once, on SyncRun
    (the same choice set in two components would need a settings override to name it)."""


class SyncRunSummarySerializer(serializers.ModelSerializer):
    status = RunStatusField(
        read_only=True, help_text="pending, running, succeeded, deferred, skipped, failed"
    )
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "status",
            "progress",
            "stage",
            "exported",
            "added",
            "removed",
            "matched_percent",
            "message",
            "error",
            "created_at",
            "finished_at",
            "status_url",
        ]
        read_only_fields = fields

    def get_status_url(self, obj: SyncRun) -> str:
        return reverse("sync-run-detail", kwargs={"pk": obj.pk})


@extend_schema_view(
    list=extend_schema(summary=_("Синхронизации аудиторий клиента, новые первыми"), tags=TAGS),
    retrieve=extend_schema(
        summary=_("Синхронизация: статус, ход, итоги и ответ платформы"),
        parameters=[ID_PARAMETER],
        tags=TAGS,
    ),
)
class SyncRunViewSet(
    ClientScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    model = SyncRun
    serializer_class = SyncRunSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = SyncRunCursorPagination
    lookup_value_converter = "str"


# ---------------------------------------------------------------------------------------------
# Audiences


class HoldoutCheckSerializer(serializers.Serializer):
    held_out = serializers.IntegerField()
    treatment = serializers.IntegerField()
    realised_percent = serializers.FloatField(allow_null=True)
    srm_p_value = serializers.FloatField(allow_null=True)
    srm_alert = serializers.BooleanField()


class AudienceSerializer(serializers.ModelSerializer):
    suppression_segments = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    next_sync_at = serializers.SerializerMethodField(
        help_text="Следующая синхронизация: по расписанию или раньше (первая у новой аудитории, "
        "повтор отложенной, после отзыва согласий); null — расписание выключено"
    )
    last_run = serializers.SerializerMethodField()
    holdout_check = serializers.SerializerMethodField(
        help_text="Контрольная группа по последней синхронизации с начала теста: held_out, "
        "treatment (прошли все правила и не в контрольной группе), realised_percent, "
        "srm_p_value (проверка долей, хи-квадрат; null — мало людей или гео-тест), srm_alert; "
        "null — теста нет"
    )

    class Meta:
        model = Audience
        fields = [
            "id",
            "name",
            "segment",
            "destination",
            "purpose",
            "identifiers",
            "lookalike_value",
            "suppression_segments",
            "sync_every_days",
            "is_active",
            "direct_retargeting_condition_id",
            "holdout_percent",
            "holdout_unit",
            "holdout_started_at",
            "holdout_check",
            "state",
            "state_message",
            "remote_status",
            "matched_percent",
            "last_synced_at",
            "next_sync_at",
            "last_run",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_next_sync_at(self, obj: Audience) -> Any:
        when = audience_next_sync(obj)
        return serializers.DateTimeField().to_representation(when) if when else None

    @extend_schema_field(HoldoutCheckSerializer(allow_null=True))
    def get_holdout_check(self, obj: Audience) -> dict | None:
        check = audience_holdout_check(audience=obj)
        if not check.running:
            return None
        return HoldoutCheckSerializer(check).data

    @extend_schema_field(SyncRunSummarySerializer(allow_null=True))
    def get_last_run(self, obj: Audience) -> dict | None:
        runs = self.context.get("last_runs")
        if runs is None:
            run = SyncRun.objects.for_client(obj.client_id).filter(audience=obj).first()
        else:
            run = runs.get(getattr(obj, "_last_run_id", None))
        return SyncRunSummarySerializer(run).data if run is not None else None


class AudienceInputSerializer(serializers.Serializer):
    """Shape only; ids are looked up among the client's objects, rules are checked by
    audiences.services."""

    name = serializers.CharField(max_length=200)
    segment = serializers.IntegerField(help_text="id сегмента клиента")
    destination = serializers.IntegerField(help_text="id рекламного кабинета клиента")
    purpose = serializers.ChoiceField(choices=Audience.Purpose.choices, required=False)
    identifiers = serializers.ChoiceField(choices=Audience.Identifiers.choices, required=False)
    lookalike_value = serializers.IntegerField(required=False, min_value=1, max_value=5)
    suppression_segments = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="id сегментов, участники которых не выгружаются",
    )
    sync_every_days = serializers.IntegerField(required=False, min_value=1, max_value=60)
    is_active = serializers.BooleanField(required=False)
    direct_retargeting_condition_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1
    )
    holdout_percent = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=HOLDOUT_MAX_PERCENT,
        help_text="Контрольная группа, % (0–50; 0 — нет): люди (или регионы), не попадающие в "
        "выгрузку, чтобы измерить прирост. Только у ретаргетинга; пока тест идёт, долю и "
        "единицу не изменить — сначала 0",
    )
    holdout_unit = serializers.ChoiceField(
        choices=Audience.HoldoutUnit.choices,
        required=False,
        help_text="person — люди; region — целые регионы (гео-тест, тариф Enterprise)",
    )


class AudienceSyncOutputSerializer(serializers.Serializer):
    created = serializers.BooleanField(
        help_text="true — создана новая синхронизация; false — уже шла, возвращена она"
    )
    run = SyncRunSerializer(allow_null=True)


AUDIENCE_EXAMPLE = OpenApiExample(
    "Ретаргетинг",
    value={
        "name": "Лучшие покупатели",
        "segment": 12,
        "destination": 3,
        "purpose": "retargeting",
        "identifiers": "email_phone",
        "suppression_segments": [15],
        "sync_every_days": 7,
    },
    request_only=True,
)


def _with_last_run_id(queryset: QuerySet) -> QuerySet:
    latest = SyncRun.objects.filter(client=OuterRef("client_id"), audience=OuterRef("pk"))
    latest = latest.order_by("-created_at", "-id")
    return queryset.annotate(_last_run_id=Subquery(latest.values("pk")[:1]))


@extend_schema_view(
    retrieve=extend_schema(
        summary=_("Аудитория: состояние, расписание, последняя синхронизация"),
        parameters=[ID_PARAMETER],
        tags=TAGS,
    ),
)
class AudienceViewSet(
    ClientScopedViewSetMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Audiences of the key's client; create and update go through audience_create /
    audience_update (segments of the same client, the beat schedule)."""

    model = Audience
    serializer_class = AudienceSerializer
    permission_classes = [ClientAccessPermission]
    pagination_class = IdCursorPagination
    lookup_value_converter = "str"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        suppression = Segment.objects.for_client(self.client).only("pk")
        return queryset.select_related("periodic_task__interval").prefetch_related(
            Prefetch("suppression_segments", queryset=suppression)
        )

    def _output(self, audiences: list[Audience]) -> list[dict]:
        ids = [a._last_run_id for a in audiences if getattr(a, "_last_run_id", None)]
        runs = SyncRun.objects.for_client(self.client).in_bulk(ids)
        context = {**self.get_serializer_context(), "last_runs": runs}
        return AudienceSerializer(audiences, many=True, context=context).data

    def _one(self, audience: Audience) -> dict:
        fresh = _with_last_run_id(self.get_queryset()).get(pk=audience.pk)
        return self._output([fresh])[0]

    @extend_schema(
        summary=_("Аудитории клиента с итогом последней синхронизации"),
        responses={200: AudienceSerializer(many=True)},
        tags=TAGS,
    )
    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(_with_last_run_id(self.get_queryset()))
        return self.get_paginated_response(self._output(page))

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self._one(self.get_object()))

    def _resolve(self, data: dict) -> dict:
        """Ids become the client's objects; another client's id is "not found"."""
        fields = dict(data)
        if "segment" in fields:
            fields["segment"] = _lookup(
                Segment, self.client, fields["segment"], "segment_not_found", "segment"
            )
        if "destination" in fields:
            fields["destination"] = _lookup(
                Destination,
                self.client,
                fields["destination"],
                "destination_not_found",
                "destination",
            )
        if "suppression_segments" in fields:
            fields["suppression_segments"] = [
                _lookup(Segment, self.client, pk, "segment_not_found", "suppression_segments")
                for pk in dict.fromkeys(fields["suppression_segments"])
            ]
        return fields

    @extend_schema(
        summary=_("Создать аудиторию (сегмент → кабинет) с расписанием синхронизации"),
        request=AudienceInputSerializer,
        examples=[AUDIENCE_EXAMPLE],
        responses={201: AudienceSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def create(self, request: Request) -> Response:
        data = AudienceInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = self._resolve(data.validated_data)
        audience = audience_create(client=self.client, **fields, **_audited(request))
        return Response(self._one(audience), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary=_(
            "Изменить аудиторию (новый сегмент или идентификаторы — новая удалённая "
            "аудитория при следующей синхронизации)"
        ),
        request=AudienceInputSerializer(partial=True),
        parameters=[ID_PARAMETER],
        responses={200: AudienceSerializer, 400: ERROR_BODY},
        tags=TAGS,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        audience = self.get_object()
        data = AudienceInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = self._resolve(data.validated_data)
        audience = audience_update(audience=audience, **fields, **_audited(request))
        return Response(self._one(audience))

    @extend_schema(
        methods=["GET"],
        operation_id="audience_sync_status",
        summary=_("Синхронизация аудитории, которая идёт сейчас (иначе последняя; null — не было)"),
        parameters=[ID_PARAMETER],
        responses={200: AudienceSyncOutputSerializer},
        tags=TAGS,
    )
    @extend_schema(
        methods=["POST"],
        operation_id="audience_sync_start",
        summary=_("Синхронизировать сейчас: новая синхронизация в очереди или уже идущая"),
        request=None,
        parameters=[ID_PARAMETER],
        responses={
            202: OpenApiResponse(
                AudienceSyncOutputSerializer,
                description="Синхронизация в очереди; created=false — она уже шла, вторая не "
                "создаётся",
            )
        },
        tags=TAGS,
    )
    @action(detail=True, methods=["get", "post"], url_path="sync", url_name="sync")
    def sync(self, request: Request, pk: str) -> Response:
        audience = self.get_object()
        if request.method == "GET":
            runs = SyncRun.objects.for_client(self.client).filter(audience=audience)
            run = runs.filter(status__in=ACTIVE_RUN_STATUSES).first() or runs.first()
            body = {"created": False, "run": SyncRunSerializer(run).data if run else None}
            return Response(body)
        run, created = audience_sync_request(audience=audience, **_audited(request))
        body = {"created": created, "run": SyncRunSerializer(run).data}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary=_("Синхронизации аудитории, новые первыми (курсорная пагинация)"),
        parameters=[ID_PARAMETER],
        responses={200: SyncRunSerializer(many=True)},
        tags=TAGS,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="sync-runs",
        url_name="sync-runs",
        serializer_class=SyncRunSerializer,
        pagination_class=SyncRunCursorPagination,
    )
    def sync_runs(self, request: Request, pk: str) -> Response:
        audience = self.get_object()
        runs = SyncRun.objects.for_client(self.client).filter(audience=audience)
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(SyncRunSerializer(page, many=True).data)


# ---------------------------------------------------------------------------------------------
# Value-based bid modifiers


class CsvRenderer(BaseRenderer):
    """``?format=csv``: makes the format negotiable; the view answers with the file built by
    ``agency.exports`` (BOM, formulas neutralised) and errors stay JSON (see the view)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        return data.encode(self.charset) if isinstance(data, str) else b""


class BidRecommendationSerializer(serializers.Serializer):
    audience_id = serializers.IntegerField()
    audience = serializers.CharField()
    segment = serializers.CharField()
    members = serializers.IntegerField()
    mean_clv = serializers.DecimalField(
        max_digits=18, decimal_places=2, allow_null=True, help_text="Средний прогноз CLV, ₽"
    )
    clv_percentile = serializers.FloatField(
        allow_null=True, help_text="Перцентиль среднего CLV среди всех покупателей клиента"
    )
    bid_modifier = serializers.IntegerField(
        allow_null=True,
        help_text="Корректировка ставки, % (100 — без изменений, 0 — не показывать)",
    )
    reason = serializers.CharField()
    retargeting_condition_id = serializers.IntegerField(allow_null=True)
    remote_segment_id = serializers.IntegerField(allow_null=True)


BID_MODIFIERS_BODY = inline_serializer(
    "BidModifiersBody",
    fields={
        "exclude_bottom": serializers.BooleanField(),
        "results": BidRecommendationSerializer(many=True),
    },
)
EXCLUDE_BOTTOM = OpenApiParameter(
    "exclude_bottom",
    OpenApiTypes.BOOL,
    description="1 — нижние 20 % по CLV исключить (0 %), а не понижать до 50 %",
)


def _exclude_bottom(request: Request) -> bool:
    return request.query_params.get("exclude_bottom", "").lower() in ("1", "true", "yes", "on")


def _recommendations(request: Request) -> list:
    return bid_modifiers_for_client(
        client=request_client(request), exclude_bottom=_exclude_bottom(request)
    )


class BidModifiersView(APIView):
    """``GET /api/v1/bid-modifiers/``: recommended bid modifiers of the client's Yandex
    audiences from predicted CLV; ``?format=csv`` downloads them as CSV."""

    permission_classes = [ClientAccessPermission]
    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        operation_id="bid_modifiers",
        summary=_(
            "Рекомендуемые корректировки ставок Яндекс Директа по ценности (CLV); ?format=csv — CSV"
        ),
        parameters=[
            EXCLUDE_BOTTOM,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
        ],
        responses={
            (200, "application/json"): BID_MODIFIERS_BODY,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="Столбцы: " + ", ".join(CSV_COLUMNS)
            ),
            (403, "application/json"): OpenApiResponse(
                ERROR_BODY, description="Тариф без ставок по ценности: tier_feature_value_bidding"
            ),
        },
        tags=TAGS,
    )
    def get(self, request: Request) -> HttpResponse:
        recommendations = _recommendations(request)
        if request.accepted_renderer.format == "csv":
            stamp = timezone.localdate().strftime("%Y%m%d")
            return csv_response(
                bid_modifiers_rows(recommendations),
                f"bid-modifiers-{request_client(request).slug}-{stamp}.csv",
                header=CSV_COLUMNS,
            )
        return Response(
            {
                "exclude_bottom": _exclude_bottom(request),
                "results": [r.as_dict() for r in recommendations],
            }
        )

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any):
        # Errors are JSON even when CSV was asked for.
        renderer = getattr(request, "accepted_renderer", None)
        if response.status_code >= 400 and renderer is not None and renderer.format == "csv":
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class DirectBodyInputSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField(min_value=1, help_text="id кампании Яндекс Директа")
    exclude_bottom = serializers.BooleanField(required=False, default=False)


DIRECT_BODY = inline_serializer(
    "DirectBidModifiersAddBody",
    fields={
        "method": serializers.CharField(help_text="add"),
        "params": serializers.DictField(
            help_text='{"BidModifiers": [{"CampaignId": N, "RetargetingAdjustments": '
            '[{"RetargetingConditionId": N, "BidModifier": N}]}]}'
        ),
    },
)


class DirectBodyView(APIView):
    """``POST /api/v1/bid-modifiers/direct-body/``: the body of a Yandex Direct
    ``bidmodifiers.add`` call for one campaign (audiences with a retargeting condition id).

    POST with the campaign in the body: a GET without its required parameter would be a 400,
    and every GET route of the API answers 200/403/404/405 to any key (the isolation walk)."""

    permission_classes = [ClientAccessPermission]

    @extend_schema(
        operation_id="bid_modifiers_direct_body",
        summary=_("Тело запроса bidmodifiers.add Яндекс Директа для кампании"),
        request=DirectBodyInputSerializer,
        examples=[OpenApiExample("Кампания", value={"campaign_id": 123456}, request_only=True)],
        responses={200: DIRECT_BODY, 400: ERROR_BODY, 403: ERROR_BODY},
        tags=TAGS,
    )
    def post(self, request: Request) -> Response:
        data = DirectBodyInputSerializer(data=request.data)
        if not data.is_valid():
            field = next(iter(data.errors))
            raise ApiError(
                "invalid",
                f"{field}: {' '.join(str(e) for e in data.errors[field])}",
                extra={"field": field, "errors": data.errors},
            )
        recommendations = bid_modifiers_for_client(
            client=request_client(request),
            exclude_bottom=data.validated_data["exclude_bottom"],
        )
        return Response(bidmodifiers_add_body(recommendations, data.validated_data["campaign_id"]))


router = SimpleRouter(use_regex_path=False)
router.register("destinations", DestinationViewSet, basename="destination")
router.register("audiences", AudienceViewSet, basename="audience")
router.register("sync-runs", SyncRunViewSet, basename="sync-run")

urlpatterns = [
    path("bid-modifiers/", BidModifiersView.as_view(), name="bid-modifiers"),
    path("bid-modifiers/direct-body/", DirectBodyView.as_view(), name="bid-modifiers-direct-body"),
    *router.urls,
]
