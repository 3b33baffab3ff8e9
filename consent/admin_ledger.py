"""Admin of purposes, texts, the ledger, sites, recipients, notices, incidents, and the 152-FZ
checklist page of a client.

Everything client-bound inherits ``TenantScopedAdmin`` (role permissions, client scoping, audit
log). Evidence is read-only here: the consent ledger and the refusals log have no add, change,
delete or bulk action; published texts cannot be edited (a new version is a new draft); incidents
and recipients with logged refusals are not deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from agency.admin_base import (
    ACCOUNT_MANAGER,
    AGENCY_ADMIN,
    ClientListFilter,
    LargeTableAdminMixin,
    StaffRoleAdmin,
    TenantAdminForm,
    TenantScopedAdmin,
    access_client_by_id,
    request_staff_client_ids,
    request_staff_role,
)
from agency.errors import ServiceError
from agency.i18n import client_localtime, in_client_zone
from clients.selectors import customer_ids_search

from .compliance import client_compliance_checklist
from .models import (
    ConsentPurpose,
    ConsentRecord,
    ConsentSite,
    ConsentText,
    CrossBorderTransferNotice,
    DataRecipient,
    Incident,
    TransferRefusal,
)
from .services import (
    consent_text_create,
    consent_text_missing_parts,
    consent_text_publish,
)
from .transfers import notice_allowed_from, transfer_decision

EDITOR_ROLES = (AGENCY_ADMIN, ACCOUNT_MANAGER)


def _adopt(target: Any, source: Any) -> None:
    """Make the admin's unsaved form instance the row a service created."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


def _local(obj: Any, value: datetime | None) -> str:
    """``value`` in the time zone of ``obj``'s client."""
    return client_localtime(obj, value).strftime("%d.%m.%Y %H:%M") if value else "—"


def _hours(delta) -> int:
    return max(int(delta.total_seconds() // 3600), 0)


def _upper_country(value: str) -> str:
    return (value or "").strip().upper()


# --------------------------------------------------------------------------------------------
# Purposes: the same list for every client, seeded by a migration


@admin.register(ConsentPurpose)
class ConsentPurposeAdmin(StaffRoleAdmin):
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None

    list_display = ("code", "name", "channel", "is_cookie", "position")
    ordering = ("position",)


# --------------------------------------------------------------------------------------------
# Texts: drafts are edited, published versions are immutable


TEXT_PARTS = (
    "title",
    "operator_name",
    "operator_address",
    "purpose_text",
    "data_list",
    "processors",
    "actions",
    "term",
    "withdrawal",
    "body",
)


class ConsentTextStatusFilter(admin.SimpleListFilter):
    title = gettext_lazy("статус")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return ConsentText.Status.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(ConsentText)
class ConsentTextAdmin(TenantScopedAdmin):
    """Drafts get the next version number from ``consent_text_create``; "publish" calls
    ``consent_text_publish``, which names the missing parts when it refuses."""

    delete_roles = (AGENCY_ADMIN,)
    publish_roles = EDITOR_ROLES
    actions = ["publish", "new_version"]

    list_display = ("purpose", "version", "client", "status", "title", "published_at")
    list_filter = (ClientListFilter, "purpose", ConsentTextStatusFilter)
    list_select_related = ("client", "purpose")
    search_fields = ("title",)
    ordering = ("client__name", "purpose__position", "-version")

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ("client", "purpose", *TEXT_PARTS)
        return (
            "client",
            "purpose",
            "version",
            "status",
            "missing_parts",
            *TEXT_PARTS,
            "created_at",
            "published_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        fixed = ["client", "purpose", "version", "status", "missing_parts"]
        fixed += ["created_at", "published_at"]
        if obj.is_published:
            fixed += list(TEXT_PARTS)
        return fixed

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_published:
            return False  # the view page shows it; a new version is the way to change it
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_published:
            return False
        return super().has_delete_permission(request, obj)

    def has_publish_permission(self, request: HttpRequest) -> bool:
        return request_staff_role(request) in self.publish_roles

    @admin.display(description=gettext_lazy("не заполнено"))
    def missing_parts(self, obj: ConsentText) -> str:
        if obj.is_published:
            return "—"
        missing = consent_text_missing_parts(obj)
        if not missing:
            return _("Все обязательные части заполнены: текст можно опубликовать.")
        return format_html(
            '<span style="color:#ba2121">{}</span>', "; ".join(str(part) for part in missing)
        )

    def save_model(self, request: HttpRequest, obj: ConsentText, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        created = consent_text_create(
            client=data["client"],
            purpose_code=data["purpose"].code,
            **{name: data.get(name, "") for name in TEXT_PARTS},
        )
        _adopt(obj, created)

    @admin.action(
        description=gettext_lazy("Опубликовать выбранные черновики"), permissions=["publish"]
    )
    def publish(self, request: HttpRequest, queryset: QuerySet) -> None:
        published = 0
        for text in queryset.select_related("client", "purpose").order_by("pk"):
            if text.is_published:
                continue
            try:
                consent_text_publish(text=text, actor=request.user, source="admin")
            except ServiceError as exc:
                self.message_user(request, f"{text.client} · {text}: {exc.message}", messages.ERROR)
                continue
            published += 1
        if published:
            message = ngettext(
                "Опубликован %(n)s текст.", "Опубликовано %(n)s текстов.", published
            ) % {"n": published}
            self.message_user(request, message, messages.SUCCESS)

    @admin.action(
        description=gettext_lazy("Создать новую версию (черновик) из выбранных"),
        permissions=["add"],
    )
    def new_version(self, request: HttpRequest, queryset: QuerySet) -> None:
        created = []
        for text in queryset.select_related("client", "purpose").order_by("pk"):
            draft = consent_text_create(
                client=text.client,
                purpose_code=text.purpose.code,
                **{name: getattr(text, name) for name in TEXT_PARTS},
            )
            self.audit(request, "admin_add", draft, {"copied_from": text.pk})
            created.append(f"{text.client} · {draft}")
        message = _("Созданы черновики: %(drafts)s.") % {"drafts": ", ".join(created)}
        self.message_user(request, message, messages.SUCCESS)

    # -- the 152-FZ checklist page of a client ---------------------------------------------

    def get_urls(self):
        return [
            path(
                "compliance/<int:client_id>/",
                self.admin_site.admin_view(self.compliance_view),
                name="consent_compliance_checklist",
            ),
            *super().get_urls(),
        ]

    def compliance_view(self, request: HttpRequest, client_id: int) -> HttpResponse:
        """Any staff role sees the checklist of a client it works with; others get a 404."""
        client = access_client_by_id(request=request, client_id=client_id)
        items = client_compliance_checklist(client=client)
        links = _checklist_links(self.admin_site.name, client)
        context = {
            **self.admin_site.each_context(request),
            "title": _("152-ФЗ: %(client)s") % {"client": client.name},
            "subtitle": None,
            "client": client,
            "opts": client._meta,
            "items": [(item, links.get(item.code)) for item in items],
            "all_ok": all(item.ok for item in items),
            "checked_at": client_localtime(client, timezone.now()),
        }
        request.current_app = self.admin_site.name
        with in_client_zone(client):
            response = TemplateResponse(request, "admin/consent/compliance_checklist.html", context)
            return response.render()


def _checklist_links(site: str, client: Any) -> dict[str, str]:
    def url(name: str, *args: Any, query: str = "") -> str | None:
        try:
            return reverse(f"{site}:{name}", args=args) + query
        except NoReverseMatch:  # an admin not registered (yet)
            return None

    by_client = f"?client={client.pk}"
    links = {
        "registry_number": url("clients_client_change", client.pk),
        "published_texts": url("consent_consenttext_changelist", query=by_client),
        "subject_requests": url("consent_datasubjectrequest_changelist", query=by_client),
        "incidents": url("consent_incident_changelist", query=by_client),
        "cross_border": url("consent_datarecipient_changelist", query=by_client),
    }
    return {code: link for code, link in links.items() if link}


def compliance_checklist_url(client: Any, site: str = "admin") -> str:
    return reverse(f"{site}:consent_compliance_checklist", args=[client.pk])


# --------------------------------------------------------------------------------------------
# The ledger: evidence, read-only


@admin.register(ConsentRecord)
class ConsentRecordAdmin(LargeTableAdminMixin, TenantScopedAdmin):
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None

    list_display = (
        "id",
        "at",
        "client",
        "customer_ref",
        "subject_id",
        "purpose",
        "action",
        "source",
        "text_version",
    )
    list_filter = (ClientListFilter, "purpose", "action", "source")
    list_select_related = ("client", "customer", "purpose", "text")
    # Newest written first: the (client_id, id) index serves it on a ledger of millions.
    ordering = ("-id",)
    search_fields = ("=subject_id",)
    search_help_text = gettext_lazy(
        "Точное совпадение: внешний id, email или телефон покупателя; id cookie."
    )
    fields = (
        "id",
        "client",
        "customer",
        "subject_id",
        "purpose",
        "text",
        "action",
        "at",
        "source",
        "ip",
        "user_agent",
        "url",
        "form_id",
        "details",
        "recorded_at",
        "prev_hash",
        "hash",
        "erased_at",
    )
    readonly_fields = fields

    @admin.display(
        description=gettext_lazy("покупатель (внешний id)"), ordering="customer__external_id"
    )
    def customer_ref(self, obj: ConsentRecord) -> str:
        return obj.customer.external_id if obj.customer_id else "—"

    @admin.display(description=gettext_lazy("версия текста"))
    def text_version(self, obj: ConsentRecord) -> str:
        return f"v{obj.text.version}" if obj.text_id else "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        customer_ids = customer_ids_search(client_ids=request_staff_client_ids(request), term=term)
        return queryset.filter(Q(customer_id__in=customer_ids) | Q(subject_id=term)), False


# --------------------------------------------------------------------------------------------
# Sites with the cookie banner


class ConsentSiteForm(TenantAdminForm):
    def clean_allowed_origins(self) -> list[str]:
        value = self.cleaned_data.get("allowed_origins") or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise forms.ValidationError(_('Список строк, напр. ["https://shop.example.ru"].'))
        origins = []
        for origin in value:
            origin = origin.strip().rstrip("/")
            scheme, sep, host = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not host or "/" in host:
                raise forms.ValidationError(
                    _("%(origin)s — не origin: нужно «https://домен» без пути.")
                    % {"origin": repr(origin)}
                )
            origins.append(origin.lower())
        return origins


@admin.register(ConsentSite)
class ConsentSiteAdmin(TenantScopedAdmin):
    form = ConsentSiteForm
    list_display = ("name", "client", "site_key", "origins", "is_active")
    list_filter = (ClientListFilter, "is_active")
    list_select_related = ("client",)
    search_fields = ("name", "=site_key")

    def get_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ("client", "name", "allowed_origins", "is_active")
        return ("client", "name", "site_key", "allowed_origins", "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return () if obj is None else ("client", "site_key")

    @admin.display(description=gettext_lazy("разрешённые origin"))
    def origins(self, obj: ConsentSite) -> str:
        return ", ".join(obj.allowed_origins or []) or "—"


# --------------------------------------------------------------------------------------------
# Recipients, cross-border notices, refusals


class CountryUpperForm(TenantAdminForm):
    def clean_country(self) -> str:
        return _upper_country(self.cleaned_data.get("country"))


@admin.register(DataRecipient)
class DataRecipientAdmin(TenantScopedAdmin):
    form = CountryUpperForm
    list_display = ("name", "legal_name", "kind", "country", "client", "transfer_status")
    list_filter = (ClientListFilter, "kind", "country")
    list_select_related = ("client",)
    search_fields = ("name", "legal_name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return ("client", "transfer_status") if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a recipient would cascade to its refusals: evidence stays.
        if (
            obj is not None
            and TransferRefusal.objects.for_client(obj.client_id).filter(recipient=obj).exists()
        ):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description=gettext_lazy("трансграничная передача"))
    def transfer_status(self, obj: DataRecipient) -> str:
        if obj.pk is None:
            return "—"
        decision = transfer_decision(recipient=obj)
        if not decision.cross_border:
            return _("не трансграничная (РФ)")
        if decision.allowed:
            return format_html(
                _('<span style="color:#2e7d32">разрешена с {}</span>'),
                f"{decision.allowed_from:%d.%m.%Y}",
            )
        if decision.allowed_from:
            return format_html(
                _('<span style="color:#b26a00">ожидание: возможна с {}</span>'),
                f"{decision.allowed_from:%d.%m.%Y}",
            )
        return format_html(
            '<strong style="color:#ba2121">{}</strong>', _("запрещена: нет уведомления")
        )


@admin.register(CrossBorderTransferNotice)
class CrossBorderTransferNoticeAdmin(TenantScopedAdmin):
    form = CountryUpperForm
    list_display = ("country", "recipient", "notified_at", "allowed_from", "reference", "client")
    list_filter = (ClientListFilter, "country")
    list_select_related = ("client",)
    search_fields = ("recipient", "reference")
    ordering = ("-notified_at",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return ("client", "allowed_from", "created_at") if obj is not None else ()

    @admin.display(description=gettext_lazy("передача возможна с"))
    def allowed_from(self, obj: CrossBorderTransferNotice) -> str:
        if obj.notified_at is None:
            return "—"
        return f"{notice_allowed_from(obj.notified_at):%d.%m.%Y}"


@admin.register(TransferRefusal)
class TransferRefusalAdmin(LargeTableAdminMixin, TenantScopedAdmin):
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None

    list_display = ("at", "client", "recipient", "operation", "reason")
    list_filter = (ClientListFilter,)
    list_select_related = ("client", "recipient")
    ordering = ("-at", "-id")
    fields = ("client", "recipient", "at", "operation", "reason")
    readonly_fields = fields


# --------------------------------------------------------------------------------------------
# Incidents: 24-hour notice, 72-hour report


class IncidentOverdueFilter(admin.SimpleListFilter):
    title = gettext_lazy("сроки")
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return [("yes", _("просрочены")), ("no", _("в срок"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() not in ("yes", "no"):
            return queryset
        now = timezone.now()
        overdue = ~Q(status=Incident.Status.CLOSED) & (
            Q(notified_at__isnull=True, detected_at__lt=now - Incident.NOTIFY_WITHIN)
            | Q(
                investigation_reported_at__isnull=True,
                detected_at__lt=now - Incident.INVESTIGATE_WITHIN,
            )
        )
        return queryset.filter(overdue) if self.value() == "yes" else queryset.exclude(overdue)


class IncidentForm(TenantAdminForm):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        detected = cleaned.get("detected_at")
        notified = cleaned.get("notified_at")
        reported = cleaned.get("investigation_reported_at")
        status = cleaned.get("status")
        if detected and detected > timezone.now():
            self.add_error("detected_at", _("Время обнаружения в будущем."))
        for name, value in (("notified_at", notified), ("investigation_reported_at", reported)):
            if detected and value and value < detected:
                self.add_error(name, _("Раньше обнаружения инцидента."))
        if status == Incident.Status.NOTIFIED and not notified:
            self.add_error("notified_at", _("Укажите, когда направлено уведомление РКН."))
        if status == Incident.Status.INVESTIGATED and not reported:
            self.add_error(
                "investigation_reported_at",
                _("Укажите, когда направлены результаты расследования."),
            )
        return cleaned


def _deadline_cell(obj: Any, deadline: datetime, done: datetime | None, closed: bool) -> str:
    if done is not None:
        if done > deadline:
            return format_html(
                _('<span style="color:#b26a00">направлено {} — опоздание {} ч</span>'),
                _local(obj, done),
                _hours(done - deadline),
            )
        return format_html(_('<span style="color:#2e7d32">направлено {}</span>'), _local(obj, done))
    if closed:
        return format_html(_("до {} (инцидент закрыт)"), _local(obj, deadline))
    now = timezone.now()
    if now > deadline:
        return format_html(
            _(
                '<strong style="color:#fff;background:#ba2121;padding:1px 4px">ПРОСРОЧЕНО: '
                "срок {} (прошло {} ч)</strong>"
            ),
            _local(obj, deadline),
            _hours(now - deadline),
        )
    return format_html(_("до {} (осталось {} ч)"), _local(obj, deadline), _hours(deadline - now))


@admin.register(Incident)
class IncidentAdmin(TenantScopedAdmin):
    """The breach register (152-FZ art. 21 part 3.1). Entries are evidence: not deleted."""

    form = IncidentForm
    delete_roles = ()

    list_display = (
        "detected_at",
        "client",
        "status",
        "notify_deadline_cell",
        "investigation_deadline_cell",
        "affected_subjects",
    )
    list_filter = (ClientListFilter, "status", IncidentOverdueFilter)
    list_select_related = ("client",)
    ordering = ("-detected_at",)
    search_fields = ("description",)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        fields = [
            "client",
            "detected_at",
            "description",
            "affected_subjects",
            "status",
            "notified_at",
            "investigation_reported_at",
        ]
        if obj is not None:
            fields[5:5] = ["notify_deadline_cell"]
            fields.append("investigation_deadline_cell")
            fields.append("created_at")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        return ("client", "notify_deadline_cell", "investigation_deadline_cell", "created_at")

    @admin.display(description=gettext_lazy("уведомление РКН (24 ч)"))
    def notify_deadline_cell(self, obj: Incident) -> str:
        if obj.pk is None:
            return "—"
        return _deadline_cell(
            obj, obj.notify_deadline, obj.notified_at, obj.status == Incident.Status.CLOSED
        )

    @admin.display(description=gettext_lazy("результаты расследования (72 ч)"))
    def investigation_deadline_cell(self, obj: Incident) -> str:
        if obj.pk is None:
            return "—"
        return _deadline_cell(
            obj,
            obj.investigation_deadline,
            obj.investigation_reported_at,
            obj.status == Incident.Status.CLOSED,
        )
