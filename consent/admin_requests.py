"""Admin of data-subject requests: the queue by due date, intake, access archive, erasure.

Every write goes through ``consent.requests`` (the same services any other entry point calls);
scoping and role permissions come from ``agency.admin_base``. The access archive is served only
through a permission-checked admin URL, never as a public media URL.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import FileResponse, Http404, HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy, ngettext

from agency.admin_base import (
    ACCOUNT_MANAGER,
    AGENCY_ADMIN,
    ClientListFilter,
    TenantAdminForm,
    TenantScopedAdmin,
)
from agency.audit import audit_log, request_ip
from agency.errors import ServiceError
from clients.models import Event, Order

from .models import DataSubjectRequest
from .requests import (
    DEADLINES,
    FUTURE_TOLERANCE,
    customer_erase,
    dsr_access_archive,
    dsr_complete,
    dsr_create,
    dsr_open,
    dsr_overdue,
    dsr_reject,
    dsr_subject_set,
    dsr_working_days_left,
)

Kind = DataSubjectRequest.Kind
OPEN_STATUSES = (DataSubjectRequest.Status.RECEIVED, DataSubjectRequest.Status.IN_PROGRESS)


def _adopt(target: Any, source: Any) -> None:
    """Make the admin's unsaved form instance the row the service created."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


class DsrForm(TenantAdminForm):
    """Intake and the change form: the person must be of the request's client and not erased;
    a request received in the future is refused."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        customer = cleaned.get("customer")
        if customer is not None and customer.erased_at is not None:
            self.add_error("customer", gettext("Данные этого покупателя уже удалены."))
        received_at = cleaned.get("received_at")
        if received_at is not None and received_at > timezone.now() + FUTURE_TOLERANCE:
            self.add_error("received_at", gettext("Время получения в будущем."))
        if self.instance.pk is None and not customer and not cleaned.get("subject_contact"):
            self.add_error(
                "subject_contact",
                gettext("Укажите покупателя или контакт субъекта, чтобы ответить ему."),
            )
        return cleaned


class OverdueFilter(admin.SimpleListFilter):
    title = gettext_lazy("срок")
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any):
        return [("yes", gettext("просрочен")), ("open", gettext("в работе, в срок"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        today = timezone.localdate()
        if self.value() == "yes":
            return dsr_overdue(queryset, today=today)
        if self.value() == "open":
            return dsr_open(queryset).filter(due_date__gte=today)
        return queryset


ADD_FIELDS = ("client", "kind", "customer", "subject_contact", "details", "received_at")
CHANGE_FIELDS = (
    "client",
    "kind",
    "customer",
    "subject_contact",
    "details",
    "received_at",
    "due_date",
    "deadline_basis",
    "status",
    "assignee",
    "resolution",
    "completed_at",
    "archive_link",
)
ALWAYS_READ_ONLY = (
    "client",
    "kind",
    "received_at",
    "due_date",
    "deadline_basis",
    "status",
    "completed_at",
    "archive_link",
)


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(TenantScopedAdmin):
    """The queue: open requests first, by due date; overdue ones in red. Requests are evidence
    that the operator answered on time: nobody deletes them."""

    form = DsrForm
    delete_roles = ()
    erase_roles = (AGENCY_ADMIN, ACCOUNT_MANAGER)
    actions = ["build_access_archive", "erase_person", "mark_completed", "reject"]

    list_display = (
        "kind",
        "subject",
        "client",
        "received_at",
        "due_date_display",
        "working_days_left",
        "status",
        "assignee",
    )
    list_filter = (OverdueFilter, "status", "kind", ClientListFilter)
    list_select_related = ("client", "customer", "assignee")
    search_fields = ("subject_contact", "=customer__external_id", "=customer__email")
    search_help_text = gettext_lazy("Контакт субъекта; точно: внешний id или email покупателя.")
    raw_id_fields = ("customer",)
    ordering = ("due_date", "received_at")

    # -- queryset and forms --------------------------------------------------------------------

    def base_queryset(self) -> QuerySet:
        return (
            super()
            .base_queryset()
            .annotate(
                queue_rank=Case(
                    When(status__in=OPEN_STATUSES, then=Value(0)),
                    default=Value(1),
                    output_field=IntegerField(),
                )
            )
        )

    def get_ordering(self, request: HttpRequest):
        # Open requests first, each group by due date (``queue_rank`` is annotated above; the
        # class attribute can only name model fields).
        return ("queue_rank", *self.ordering)

    def get_fields(self, request: HttpRequest, obj: Any = None):
        return ADD_FIELDS if obj is None else CHANGE_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        if obj is None:
            return ()
        if not obj.is_open:
            return CHANGE_FIELDS
        return ALWAYS_READ_ONLY + (("customer",) if obj.customer_id else ())

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if db_field.name == "assignee":
            kwargs["queryset"] = (
                get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: DataSubjectRequest, form: Any, change: bool
    ) -> None:
        if not change:
            data = form.cleaned_data
            created = dsr_create(
                client=data["client"],
                kind=data["kind"],
                customer=data.get("customer"),
                subject_contact=data.get("subject_contact", ""),
                details=data.get("details", ""),
                received_at=data.get("received_at") or None,
                actor=request.user,
                source="admin",
            )
            _adopt(obj, created)
            if created.status == DataSubjectRequest.Status.COMPLETED:
                messages.info(request, created.resolution)
            return
        identified = obj.customer if "customer" in form.changed_data else None
        if identified is not None:
            obj.customer = None
        super().save_model(request, obj, form, change)
        if identified is not None:
            dsr_subject_set(request=obj, customer=identified, actor=request.user, source="admin")

    # -- columns -------------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("субъект"))
    def subject(self, obj: DataSubjectRequest) -> str:
        if obj.customer_id:
            return str(obj.customer)
        return obj.subject_contact or "—"

    @admin.display(description=gettext_lazy("срок исполнения"), ordering="due_date")
    def due_date_display(self, obj: DataSubjectRequest) -> str:
        if obj.is_overdue:
            return format_html(
                gettext(
                    '<strong class="dsr-overdue" style="color: #ba2121">{} · просрочен</strong>'
                ),
                f"{obj.due_date:%d.%m.%Y}",
            )
        return f"{obj.due_date:%d.%m.%Y}"

    @admin.display(description=gettext_lazy("осталось рабочих дней"))
    def working_days_left(self, obj: DataSubjectRequest) -> str:
        if not obj.is_open:
            return "—"
        if obj.is_overdue:
            late = (timezone.localdate() - obj.due_date).days
            return format_html(
                gettext('<span style="color: #ba2121">просрочен на {} дн.</span>'), late
            )
        return str(dsr_working_days_left(obj))

    @admin.display(description=gettext_lazy("основание срока"))
    def deadline_basis(self, obj: DataSubjectRequest) -> str:
        deadline = DEADLINES[obj.kind]
        unit = gettext("рабочих") if deadline.working_days else gettext("календарных")
        return gettext("%(days)s %(unit)s дней · %(basis)s") % {
            "days": deadline.days,
            "unit": unit,
            "basis": deadline.basis,
        }

    @admin.display(description=gettext_lazy("архив для субъекта"))
    def archive_link(self, obj: DataSubjectRequest) -> str:
        if not obj.archive:
            return "—"
        url = reverse(f"{self.admin_site.name}:consent_datasubjectrequest_archive", args=[obj.pk])
        return format_html(gettext('<a href="{}">Скачать ZIP (JSON и CSV)</a>'), url)

    # -- permissions ---------------------------------------------------------------------------

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return self._role_allows(request, self.erase_roles)

    # -- actions -------------------------------------------------------------------------------

    def _run(self, request: HttpRequest, queryset: QuerySet, service: Any, done: str) -> None:
        ok, errors = 0, []
        for dsr in queryset.select_related("client", "customer"):
            try:
                service(dsr)
            except ServiceError as exc:
                errors.append(f"{dsr} (№{dsr.pk}): {exc.message}")
            else:
                ok += 1
        if ok:
            self.message_user(request, f"{done}: {ok}.", messages.SUCCESS)
        for error in errors:
            self.message_user(request, error, messages.ERROR)

    @admin.action(
        description=gettext_lazy("Сформировать архив сведений (доступ к данным)"),
        permissions=["change"],
    )
    def build_access_archive(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(
            request,
            queryset,
            lambda dsr: dsr_access_archive(request=dsr, actor=request.user, source="admin"),
            gettext("Архивов сформировано"),
        )

    @admin.action(description=gettext_lazy("Отметить исполненными"), permissions=["change"])
    def mark_completed(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(
            request,
            queryset,
            lambda dsr: dsr_complete(request=dsr, actor=request.user, source="admin"),
            gettext("Исполнено запросов"),
        )

    @admin.action(
        description=gettext_lazy("Отказать (обоснование — из поля «результат»)"),
        permissions=["change"],
    )
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._run(
            request,
            queryset,
            lambda dsr: dsr_reject(
                request=dsr, resolution=dsr.resolution, actor=request.user, source="admin"
            ),
            gettext("Отказано по запросам"),
        )

    @admin.action(description=gettext_lazy("Удалить данные субъекта…"), permissions=["erase"])
    def erase_person(self, request: HttpRequest, queryset: QuerySet):
        """Erase the people of the selected erasure requests, after a confirmation page."""
        eligible, skipped = [], []
        for dsr in queryset.select_related("client", "customer"):
            if dsr.kind != Kind.ERASURE:
                skipped.append((dsr, gettext("это не запрос на удаление")))
            elif not dsr.is_open:
                skipped.append((dsr, gettext("запрос уже закрыт")))
            elif dsr.customer_id is None:
                skipped.append((dsr, gettext("субъект не указан: сначала укажите покупателя")))
            else:
                eligible.append(dsr)
        if request.POST.get("post") == "yes":
            for dsr in eligible:
                customer_erase(
                    customer=dsr.customer, request=dsr, actor=request.user, source="admin"
                )
            if eligible:
                message = ngettext(
                    "Данные удалены по %(n)s запросу.",
                    "Данные удалены по %(n)s запросам.",
                    len(eligible),
                ) % {"n": len(eligible)}
                self.message_user(request, message, messages.SUCCESS)
            for dsr, reason in skipped:
                self.message_user(request, f"{dsr} (№{dsr.pk}): {reason}.", messages.WARNING)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Удалить персональные данные субъектов?"),
            "opts": self.model._meta,
            "eligible": [
                (
                    dsr,
                    Order.objects.for_client(dsr.client_id).filter(customer=dsr.customer).count(),
                    Event.objects.for_client(dsr.client_id).filter(customer=dsr.customer).count(),
                )
                for dsr in eligible
            ],
            "skipped": skipped,
            "queryset": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/consent/datasubjectrequest/erase_confirmation.html", context
        )

    # -- the archive, through the admin only ---------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/archive/",
                self.admin_site.admin_view(self.archive_view),
                name="consent_datasubjectrequest_archive",
            ),
            *super().get_urls(),
        ]

    def archive_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        """The archive holds everything about a person: only staff who handle the client's
        requests (change permission on this one) download it, and each download is audited."""
        dsr = self.get_object(request, unquote(object_id))
        if dsr is None or not self.has_change_permission(request, dsr) or not dsr.archive:
            raise Http404(gettext("архив не найден"))
        audit_log(
            action="dsr_access_archive_downloaded",
            source="admin",
            actor=request.user,
            client=dsr.client_id,
            obj=dsr,
            ip=request_ip(request),
        )
        return FileResponse(
            dsr.archive.open("rb"),
            as_attachment=True,
            filename=f"personal-data-request-{dsr.pk}.zip",
            content_type="application/zip",
        )
