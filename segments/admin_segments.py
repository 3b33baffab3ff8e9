"""Admin of segments and memberships: sizes, trends, members export, the rule form.

- Segments: list with size, trend (the last two size snapshots: arrow and delta) and warnings;
  the form shows the definition as pretty-printed JSON, the definition in Russian, and
  validation errors naming the bad node (``all[2].orders.count``); saving goes through
  ``segment_create`` / ``segment_update`` (tier limits). The change page charts the sizes over
  time (Chart.js, vendored) and links to the members and their CSV export (streamed, only
  through this admin, audited). "Обновить сейчас" refreshes the selected segments.
- Memberships: read only (entered/left), filtered by segment and current/left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import gettext, gettext_lazy, ngettext

from agency.admin_base import (
    ClientListFilter,
    LargeTableAdminMixin,
    TenantAdminForm,
    TenantScopedAdmin,
    request_staff_client_ids,
)
from agency.audit import audit_log, request_ip
from agency.errors import ServiceError
from agency.exports import csv_streaming_response
from agency.parsers import JsonContentError, json_loads_checked
from clients.selectors import customer_identity_q
from clients.tiers import TierLimitError

from .models import Segment, SegmentMembership, SegmentSizeSnapshot
from .segmentation import (
    SegmentError,
    segment_check,
    segment_create,
    segment_definition_describe,
    segment_members_current,
    segment_refresh,
    segment_update,
)

SNAPSHOTS_CHARTED = 500
SNAPSHOTS_LISTED = 10
EXPORT_COLUMNS = (
    ("customer__external_id", "external_id"),
    ("customer__email", "email"),
    ("customer__phone", "phone"),
    ("customer__score__rfm_segment", "rfm_segment"),
    ("customer__score__lifecycle_stage", "lifecycle_stage"),
    ("customer__score__recency_days", "recency_days"),
    ("customer__score__frequency", "frequency"),
    ("customer__score__monetary", "monetary"),
    ("customer__score__churn_probability", "churn_probability"),
    ("customer__score__predicted_clv", "predicted_clv"),
    ("customer__score__clv_percentile", "clv_percentile"),
    ("entered_at", "entered_at"),
)

DEFINITION_HELP = gettext_lazy("""
<p>JSON по виду сегмента:</p>
<ul>
<li><b>rfm</b>: <code>{"names": ["Champions", "Loyal"]}</code></li>
<li><b>lifecycle</b>: <code>{"stages": ["Onboarding", "Retention"]}</code></li>
<li><b>predictive</b>: <code>{"churn_at_least": 0.7}</code>, <code>{"clv_top_percent": 10}</code>
 или <code>{"clv_decile": 10}</code></li>
<li><b>lookalike_seed</b>: <code>{"top_percent": 20, "by": "predicted_clv"}</code>
 (или <code>"by": "monetary"</code> — по сумме покупок, без предиктивных моделей)</li>
<li><b>suppression</b>: <code>{"type": "recent_purchasers", "days": 30}</code>,
 <code>{"type": "existing_customers"}</code>,
 <code>{"type": "opted_out", "purpose": "ad_audiences"}</code></li>
<li><b>rule</b>: группы <code>{"all"|"any"|"none": [...]}</code> и условия
 <code>{"attribute": "city", "op": "eq", "value": "Москва"}</code>,
 <code>{"score": "churn_probability", "op": "gte", "value": 0.7}</code>,
 <code>{"orders": {"count": {"gte": 2}, "within_days": 90, "amount_gte": 1000}}</code>,
 <code>{"events": {"type": "cart", "count": {"gte": 1}, "within_days": 7}}</code></li>
</ul>
<p>Ошибки называют узел: <code>all[2].orders.count</code> — третье условие группы all.</p>
""")


class PrettyJSONField(forms.JSONField):
    """Shown indented, with Cyrillic as is; a syntax error says where."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)

    def to_python(self, value: Any) -> Any:
        if self.disabled or value in self.empty_values:
            return super().to_python(value)
        try:
            return json_loads_checked(value)  # the API's reading: no NUL, no 1,000 levels
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                gettext("Это не JSON: %(error)s (строка %(line)s, столбец %(column)s).")
                % {"error": exc.msg, "line": exc.lineno, "column": exc.colno},
                code="invalid",
            ) from exc
        except JsonContentError as exc:
            raise forms.ValidationError(exc.message, code="invalid") from exc
        except ValueError as exc:
            raise forms.ValidationError(
                gettext("Это не JSON: %(error)s.") % {"error": exc}, code="invalid"
            ) from exc

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled:
            return initial
        try:
            return json_loads_checked(data)
        except (ValueError, TypeError, JsonContentError):
            return forms.fields.InvalidJSONInput(data)


class SegmentAdminForm(TenantAdminForm):
    definition = PrettyJSONField(
        label=gettext_lazy("определение (JSON)"),
        widget=forms.Textarea(
            attrs={"rows": 16, "cols": 90, "style": "font-family: monospace", "spellcheck": "false"}
        ),
        help_text=DEFINITION_HELP,
    )

    class Meta:
        model = Segment
        fields = ("client", "name", "kind", "definition", "is_active")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        client = cleaned.get("client") or getattr(self.instance, "client", None)
        if client is None or self.errors:
            return cleaned
        segment = self.instance if self.instance.pk else None
        try:
            cleaned["definition"] = segment_check(
                client=client,
                name=cleaned.get("name", ""),
                kind=cleaned.get("kind", ""),
                definition=cleaned.get("definition"),
                is_active=cleaned.get("is_active", False),
                segment=segment,  # still as stored: the form fills the instance after clean()
            )
        except SegmentError as exc:
            if exc.errors:
                self.add_error(
                    "definition",
                    [f"{e.path or gettext('определение')}: {e.message}" for e in exc.errors],
                )
            elif exc.code in ("invalid_name", "segment_name_taken"):
                self.add_error("name", exc.message)
            elif exc.code == "invalid_kind":
                self.add_error("kind", exc.message)
            else:
                self.add_error(None, exc.message)
        except TierLimitError as exc:
            self.add_error(None, exc.message)
        return cleaned


def _adopt(target: Segment, source: Segment) -> None:
    """The admin's form instance becomes the row the service saved (see clients.admin)."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


def _snapshot_size(offset: int) -> Subquery:
    return Subquery(
        SegmentSizeSnapshot.objects.filter(segment_id=OuterRef("pk"))
        .order_by("-at", "-id")
        .values("size")[offset : offset + 1]
    )


@admin.register(Segment)
class SegmentAdmin(TenantScopedAdmin):
    form = SegmentAdminForm
    audited_by_services = ("add", "change")  # segment_created / segment_updated
    actions = ["refresh_now"]
    list_display = (
        "name",
        "client",
        "kind",
        "is_active",
        "size",
        "trend",
        "warnings_display",
        "refreshed_at",
    )
    list_filter = (ClientListFilter, "kind", "is_active")
    list_select_related = ("client",)
    search_fields = ("name",)
    ordering = ("client__name", "name")
    readonly_fields = (
        "description",
        "size",
        "trend",
        "warnings_display",
        "refreshed_at",
        "members_links",
        "created_by",
        "created_at",
        "updated_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        main = ("client", "name", "kind", "definition", "is_active")
        if obj is None:
            return ((None, {"fields": main}),)
        return (
            (None, {"fields": main}),
            (gettext("Что это"), {"fields": ("description",)}),
            (
                gettext("Состав"),
                {"fields": ("size", "trend", "warnings_display", "refreshed_at", "members_links")},
            ),
            (gettext("Учёт"), {"fields": ("created_by", "created_at", "updated_at")}),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = list(self.readonly_fields)
        if obj is not None:
            fields.insert(0, "client")  # a segment never moves between clients
        return fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .annotate(_last_size=_snapshot_size(0), _previous_size=_snapshot_size(1))
        )

    # displays -------------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("определение по-русски"))
    def description(self, obj: Segment) -> str:
        return format_html(
            '<div class="segment-description" style="white-space: pre-wrap">{}</div>',
            segment_definition_describe(obj.kind, obj.definition),
        )

    @admin.display(description=gettext_lazy("динамика"))
    def trend(self, obj: Segment) -> str:
        last = getattr(obj, "_last_size", None)
        previous = getattr(obj, "_previous_size", None)
        if last is None or previous is None:
            return "—"
        delta = last - previous
        if delta > 0:
            return format_html(
                gettext('<span style="color: #2e7d32" title="с {}">▲ +{}</span>'), previous, delta
            )
        if delta < 0:
            return format_html(
                gettext('<span style="color: #ba2121" title="с {}">▼ −{}</span>'), previous, -delta
            )
        return format_html(gettext('<span style="color: #666" title="с {}">→ 0</span>'), previous)

    @admin.display(description=gettext_lazy("предупреждения"))
    def warnings_display(self, obj: Segment) -> str:
        if not obj.warnings:
            return "—"
        return format_html_join(
            "", '<div style="color: #b26a00">⚠ {}</div>', ((w,) for w in obj.warnings)
        )

    @admin.display(description=gettext_lazy("участники"))
    def members_links(self, obj: Segment) -> str:
        site = self.admin_site.name
        members = reverse(f"{site}:segments_segmentmembership_changelist")
        query = urlencode({"segment": obj.pk, "state": "current"})
        export = reverse(f"{site}:segments_segment_members_csv", args=[obj.pk])
        return format_html(
            gettext(
                '<a href="{}?{}">Участники ({})</a> · <a class="members-export" href="{}">'
                "Выгрузить CSV</a> (external_id, email, телефон, оценки)"
            ),
            members,
            query,
            obj.size,
            export,
        )

    # saving through the services ------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Segment, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            saved = segment_update(
                segment=Segment.objects.for_client(obj.client_id).get(pk=obj.pk),
                actor=request.user,
                name=data["name"],
                kind=data["kind"],
                definition=data["definition"],
                is_active=data["is_active"],
                source="admin",
            )
        else:
            saved = segment_create(
                client=data["client"],
                name=data["name"],
                kind=data["kind"],
                definition=data["definition"],
                is_active=data["is_active"],
                actor=request.user,
                source="admin",
            )
        _adopt(obj, saved)

    @admin.action(description=gettext_lazy("Обновить состав сейчас"), permissions=["change"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        now = timezone.now()
        done = entered = left = 0
        for segment in queryset.select_related("client"):
            try:
                result = segment_refresh(segment=segment, now=now)
            except ServiceError as exc:
                self.message_user(request, f"«{segment}»: {exc.message}", messages.ERROR)
                continue
            if result.skipped:
                self.message_user(request, f"«{segment}»: {result.skipped}", messages.WARNING)
                continue
            done += 1
            entered += result.entered
            left += result.left
        if done:
            self.message_user(
                request,
                ngettext(
                    "Обновлён %(n)s сегмент; вошли %(entered)s, вышли %(left)s.",
                    "Обновлено %(n)s сегментов; вошли %(entered)s, вышли %(left)s.",
                    done,
                )
                % {"n": done, "entered": entered, "left": left},
                messages.SUCCESS,
            )

    # the change page: sizes over time -------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self.has_view_permission(request, obj):
            snapshots = list(
                SegmentSizeSnapshot.objects.for_client(obj.client_id)
                .filter(segment_id=obj.pk)
                .order_by("-at", "-id")[:SNAPSHOTS_CHARTED]
            )[::-1]
            extra_context["size_chart"] = {
                "points": [
                    {"x": int(s.at.timestamp() * 1000), "y": s.size, "in": s.entered, "out": s.left}
                    for s in snapshots
                ],
                "now": int(timezone.now().timestamp() * 1000),
                "size": obj.size,
            }
            extra_context["recent_snapshots"] = snapshots[-SNAPSHOTS_LISTED:][::-1]
        return super().change_view(request, object_id, form_url, extra_context)

    # members export -------------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/members.csv",
                self.admin_site.admin_view(self.members_csv_view),
                name="segments_segment_members_csv",
            ),
            *super().get_urls(),
        ]

    def members_csv_view(self, request: HttpRequest, object_id: str) -> StreamingHttpResponse:
        """Customers' personal data: only through the scoped admin, streamed, audited."""
        segment = self.get_object(request, unquote(object_id))
        if segment is None or not self.has_view_permission(request, segment):
            raise Http404(gettext("сегмент не найден"))
        audit_log(
            action="segment_members_exported",
            source="admin",
            actor=request.user,
            client=segment.client_id,
            obj=segment,
            details={"size": segment.size, "format": "csv"},
            ip=request_ip(request),
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
        return csv_streaming_response(
            _member_rows(segment),
            f"segment-{segment.pk}-members-{stamp}.csv",
            header=[header for _field, header in EXPORT_COLUMNS],
        )


def _member_rows(segment: Segment) -> Iterator[tuple[Any, ...]]:
    rows = (
        segment_members_current(segment)
        .order_by("customer_id")
        .values_list(*(field for field, _header in EXPORT_COLUMNS))
    )
    return rows.iterator(chunk_size=5000)


# --------------------------------------------------------------------------------------------
# Memberships (read only)


class SegmentFilter(admin.SimpleListFilter):
    title = gettext_lazy("сегмент")
    parameter_name = "segment"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[int, str]]:
        segments = (
            Segment.objects.unscoped()
            .filter(client_id__in=sorted(request_staff_client_ids(request)))
            .select_related("client")
            .order_by("client__name", "name")
        )
        return [(s.pk, f"{s.client.name}: {s.name}") for s in segments]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and str(value).isdigit():
            return queryset.filter(segment_id=int(value))
        return queryset


class StateFilter(admin.SimpleListFilter):
    title = gettext_lazy("участие")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return [("current", gettext("сейчас в сегменте")), ("left", gettext("вышли"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("current", "left"):
            return queryset.filter(left_at__isnull=self.value() == "current")
        return queryset


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(LargeTableAdminMixin, TenantScopedAdmin):
    """Written only by segment refreshes: a record of who entered and left, read only."""

    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None
    list_display = ("customer", "segment", "client", "entered_at", "left_at")
    list_filter = (ClientListFilter, SegmentFilter, StateFilter)
    list_select_related = ("customer", "segment", "client")
    search_fields = ("=customer__external_id",)
    search_help_text = gettext_lazy("Покупатель: email, телефон в любом формате или внешний id.")
    ordering = ("-entered_at", "-id")
    fields = ("client", "segment", "customer", "entered_at", "left_at")
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        q = customer_identity_q(search_term, prefix="customer__")
        return (queryset if q is None else queryset.filter(q)), False
