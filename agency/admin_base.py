"""The base of every staff admin: role-based permissions and client scoping, in one place.

Staff permissions come from roles (``agency.roles``), not from Django model permissions:

- agency admin: everything;
- account manager: view, add and change the data of their own clients, no deletion of evidence;
- analyst: view only.

Every admin of a client's data (and of ``Client`` itself) inherits :class:`TenantScopedAdmin`:
its changelist, change form, foreign-key choices and raw-id widgets see only the clients of the
signed-in person (``agency.roles.staff_clients``), so a foreign object is "not found" exactly like
a missing one. Admin additions, changes and deletions are also written to the audit log.

Times of a client's data are shown in the client's time zone (``agency.i18n``): a change form in
its object's client's zone (and read in it), and each date-time column of a list in its row's
client's zone, with the zone's abbreviation.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import widgets
from django.contrib.admin.utils import unquote
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db import connections, models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .audit import audit_log, request_ip
from .i18n import in_client_zone
from .roles import ACCOUNT_MANAGER, AGENCY_ADMIN, ANALYST, STAFF_GROUPS, staff_clients, staff_role
from .tenancy import get_from_scoped_or_404, tenant_model

# --------------------------------------------------------------------------------------------
# Who is asking (cached on the request: the admin asks for permissions many times per page)


def request_staff_role(request: HttpRequest) -> str | None:
    """The staff role of the request's user, looked up once per request."""
    if not hasattr(request, "_cvm_staff_role"):
        request._cvm_staff_role = staff_role(request.user)
    return request._cvm_staff_role


def request_staff_client_ids(request: HttpRequest) -> frozenset[int]:
    """Ids of the clients the request's user works with, looked up once per request."""
    if not hasattr(request, "_cvm_staff_client_ids"):
        ids = staff_clients(request.user).values_list("pk", flat=True)
        request._cvm_staff_client_ids = frozenset(ids)
    return request._cvm_staff_client_ids


def request_client_zones(request: HttpRequest) -> dict[int, str]:
    """Time zone names of the clients the request's user works with, by client id, looked up
    once per request."""
    if not hasattr(request, "_cvm_client_zones"):
        zones = staff_clients(request.user).values_list("pk", "time_zone")
        request._cvm_client_zones = dict(zones)
    return request._cvm_client_zones


def access_client_by_id(*, request: HttpRequest, client_id: Any) -> models.Model:
    """A client the request's staff user works with, else 404: the same answer for a missing
    client, someone else's client, a malformed id and a person without a staff role."""
    if request_staff_role(request) is None:
        raise Http404(gettext("клиент не найден"))
    return get_from_scoped_or_404(staff_clients(request.user), pk=client_id)


def _client_model() -> type[models.Model]:
    return tenant_model()


_NO_CLIENT = object()


def object_client_id(obj: Any) -> Any:
    """The client an object belongs to: itself for a Client, ``client_id`` for tenant data,
    ``_NO_CLIENT`` for objects that belong to no client at all."""
    if isinstance(obj, _client_model()):
        return obj.pk
    return getattr(obj, "client_id", _NO_CLIENT)


def is_client_scoped_model(model: type[models.Model]) -> bool:
    """Does ``model`` hold one client's data (a ``client`` foreign key to Client)?"""
    try:
        field = model._meta.get_field("client")
    except Exception:  # FieldDoesNotExist and friends: not tenant data
        return False
    return bool(field.is_relation and field.related_model is _client_model())


def scoped_choices(model: type[models.Model], request: HttpRequest) -> QuerySet | None:
    """Rows of ``model`` the user may pick in a form, or None when ``model`` is not client data."""
    if model is _client_model():
        return staff_clients(request.user)
    if is_client_scoped_model(model):
        manager = model._default_manager
        base = manager.unscoped() if hasattr(manager, "unscoped") else manager.all()
        return base.filter(client__in=sorted(request_staff_client_ids(request)))
    return None


# --------------------------------------------------------------------------------------------
# Permissions by role


class RolePermissionsMixin:
    """Permissions decided by staff role, declared per admin as tuples of roles."""

    view_roles: tuple[str, ...] = STAFF_GROUPS
    add_roles: tuple[str, ...] = (AGENCY_ADMIN, ACCOUNT_MANAGER)
    change_roles: tuple[str, ...] = (AGENCY_ADMIN, ACCOUNT_MANAGER)
    delete_roles: tuple[str, ...] = (AGENCY_ADMIN,)

    def object_in_scope(self, request: HttpRequest, obj: Any) -> bool:
        """Objects of no particular client are open to every role of the admin."""
        return True

    def _role_allows(self, request: HttpRequest, roles: Iterable[str], obj: Any = None) -> bool:
        role = request_staff_role(request)
        if role is None or role not in roles:
            return False
        return obj is None or self.object_in_scope(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request_staff_role(request) in self.view_roles

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.view_roles, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.add_roles, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.change_roles, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, self.delete_roles, obj)


class StaffRoleAdmin(RolePermissionsMixin, admin.ModelAdmin):
    """Admin of agency-wide data (tiers, settings): role permissions, no client scoping."""


# --------------------------------------------------------------------------------------------
# Client scoping


class ScopedRawIdWidget(widgets.ForeignKeyRawIdWidget):
    """The raw-id widget looks its label up in a scoped queryset (the stock one uses the default
    manager, which refuses unscoped queries and would show other clients' objects)."""

    def __init__(self, rel: Any, admin_site: Any, *, queryset: QuerySet, **kwargs: Any):
        super().__init__(rel, admin_site, **kwargs)
        self.queryset = queryset

    def label_and_url_for_value(self, value: Any) -> tuple[str, str]:
        key = self.rel.get_related_field().name
        try:
            obj = self.queryset.using(self.db).get(**{key: value})
        except (ValueError, TypeError, self.rel.model.DoesNotExist, ValidationError):
            return "", ""
        try:
            opts = obj._meta
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=(obj.pk,)
            )
        except NoReverseMatch:
            url = ""
        return Truncator(obj).words(14), url


class TenantAdminForm(forms.ModelForm):
    """Refuses a foreign key to another client's object (an order of client A whose customer
    belongs to client B), even when the user works with both clients."""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        client = cleaned.get("client") if "client" in self.fields else None
        client_id = client.pk if client is not None else getattr(self.instance, "client_id", None)
        if client_id is None:
            return cleaned
        for name, value in list(cleaned.items()):
            if name == "client" or not isinstance(value, models.Model):
                continue
            other = object_client_id(value)
            if other is not _NO_CLIENT and other != client_id:
                self.add_error(name, _("Этот объект принадлежит другому клиенту."))
        return cleaned


class TenantScopeMixin:
    """Querysets, object permissions and foreign-key choices limited to the user's clients.

    ``client_field`` is the path to the client from the model (``"pk"`` for Client itself).
    """

    client_field: str = "client"

    def base_queryset(self) -> QuerySet:
        manager = self.model._default_manager
        # The admin works across the user's clients on purpose: the filter below scopes it.
        return manager.unscoped() if hasattr(manager, "unscoped") else manager.all()

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        # A literal id list (cached per request), not a subquery: PostgreSQL then uses it as an
        # index condition on the (client_id, ...) indexes, e.g. for exact searches.
        client_ids = sorted(request_staff_client_ids(request))
        return queryset.filter(**{f"{self.client_field}__in": client_ids})

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = self.scope_queryset(request, self.base_queryset())
        ordering = self.get_ordering(request)
        if ordering:
            queryset = queryset.order_by(*ordering)
        return queryset

    def object_in_scope(self, request: HttpRequest, obj: Any) -> bool:
        client_id = object_client_id(obj)
        if client_id is _NO_CLIENT:
            return True
        if client_id is None:  # agency-wide rows (e.g. audit entries of no client)
            return request_staff_role(request) == AGENCY_ADMIN
        return client_id in request_staff_client_ids(request)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        queryset = kwargs.get("queryset")
        if queryset is None:
            queryset = scoped_choices(db_field.remote_field.model, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        if queryset is not None and "widget" not in kwargs and db_field.name in self.raw_id_fields:
            kwargs["widget"] = ScopedRawIdWidget(
                db_field.remote_field, self.admin_site, queryset=queryset, using=kwargs.get("using")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any):
        if "queryset" not in kwargs:
            queryset = scoped_choices(db_field.remote_field.model, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


class TenantScopedAdmin(TenantScopeMixin, RolePermissionsMixin, admin.ModelAdmin):
    """Base admin of a client's data and of Client itself (see the module docstring)."""

    form = TenantAdminForm
    audited_by_services: tuple[str, ...] = ()
    """Which of "add", "change", "delete" the admin's services write to the audit log
    themselves (as for every other entry point): the admin adds no second entry for those."""

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # Bulk deletion of client data destroys evidence; one object at a time, by an admin.
        actions.pop("delete_selected", None)
        return actions

    # -- times in the client's zone ----------------------------------------------------------

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ):
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if obj is None or object_client_id(obj) in (None, _NO_CLIENT):
            return super().changeform_view(request, object_id, form_url, extra_context)
        with in_client_zone(obj):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render") and not response.is_rendered:
                response.render()  # inside the zone: a TemplateResponse renders late
            return response

    def get_list_display(self, request: HttpRequest):
        list_display = super().get_list_display(request)
        if not is_client_scoped_model(self.model):
            return list_display
        zones = request_client_zones(request)
        return [self._client_time_column(name, zones) or name for name in list_display]

    def get_list_display_links(self, request: HttpRequest, list_display):
        links = super().get_list_display_links(request, list_display)
        if not links:
            return links
        columns = {getattr(c, "client_time_field", None): c for c in list_display}
        return [columns.get(name, name) if isinstance(name, str) else name for name in links]

    def _client_time_column(self, name: Any, zones: dict[int, str]) -> Callable | None:
        """A list column showing the date-time field ``name`` in each row's client's zone, or
        None when ``name`` is not a date-time field of the model."""
        if not isinstance(name, str):
            return None
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:  # a method, a property, a lookup through a relation
            return None
        if not isinstance(field, models.DateTimeField):
            return None
        empty = self.get_empty_value_display()
        site_zone = timezone.get_default_timezone_name()

        def column(obj: Any) -> str:
            value = getattr(obj, name)
            if value is None:
                return empty
            zone = zoneinfo.ZoneInfo(zones.get(obj.client_id) or site_zone)
            local = timezone.localtime(value, zone)
            return format_html(
                '{} <span class="quiet" title="{}">{}</span>',
                formats.localize(local),
                str(zone),
                local.tzname(),
            )

        column.__name__ = name
        column.short_description = field.verbose_name
        column.admin_order_field = name
        column.client_time_field = name
        return column

    def audit(self, request: HttpRequest, action: str, obj: Any, details: dict | None = None):
        client_id = object_client_id(obj)
        return audit_log(
            action=action,
            source="admin",
            actor=request.user,
            client=None if client_id is _NO_CLIENT else client_id,
            obj=obj,
            details=details,
            ip=request_ip(request),
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any):
        entry = super().log_addition(request, obj, message)
        if "add" not in self.audited_by_services:
            self.audit(request, "admin_add", obj, {"change": _json_safe(message)})
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any):
        entry = super().log_change(request, obj, message)
        if "change" not in self.audited_by_services:
            self.audit(request, "admin_change", obj, {"change": _json_safe(message)})
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any):
        # Django 5.1+ calls log_deletions (log_deletion is deprecated); before the deletion.
        objects = list(queryset)
        entries = super().log_deletions(request, objects)
        if "delete" not in self.audited_by_services:
            for obj in objects:
                self.audit(request, "admin_delete", obj)
        return entries


class TenantScopedInline(TenantScopeMixin, RolePermissionsMixin, admin.TabularInline):
    """Inline of client data: same scoping and role permissions as the parent admin."""

    form = TenantAdminForm
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if not self.has_view_or_change_permission(request):
            queryset = queryset.none()
        return queryset


# --------------------------------------------------------------------------------------------
# Lists of a client's customer base (millions of rows)


class ClientListFilter(admin.SimpleListFilter):
    """Filter by client, offering only the user's clients (the stock related filter lists all
    clients, or scans the table for distinct ones)."""

    title = _("клиент")
    parameter_name = "client"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[int, str]]:
        return [(c.pk, c.name) for c in staff_clients(request.user).only("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and str(value).isdigit():
            return queryset.filter(client_id=int(value))
        return queryset


def planner_row_estimate(queryset: QuerySet) -> int | None:
    """PostgreSQL's estimate of the rows of ``queryset`` (EXPLAIN; for a bare table that is
    ``pg_class.reltuples``), or None on other databases."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().query.get_compiler(using=queryset.db).as_sql()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)  # noqa: S608 (SQL built by the ORM)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``exact_limit`` rows (a COUNT over a LIMIT subquery); past that,
    uses the planner's estimate on PostgreSQL instead of a full COUNT(*) of a million rows.
    Pages past the real end are then simply empty."""

    exact_limit = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        capped = queryset.order_by()[: self.exact_limit + 1].count()
        if capped <= self.exact_limit:
            return capped
        estimate = planner_row_estimate(queryset)
        if estimate is None:
            return queryset.count()  # SQLite, the embedded default: a COUNT is affordable there
        return max(estimate, capped)


class LargeTableAdminMixin:
    """Changelist settings for tables of millions of rows: no full counts, no date drill-down."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    date_hierarchy = None
    list_per_page = 50
    list_max_show_all = 200


__all__ = [
    "ACCOUNT_MANAGER",
    "AGENCY_ADMIN",
    "ANALYST",
    "ClientListFilter",
    "EstimatedCountPaginator",
    "LargeTableAdminMixin",
    "RolePermissionsMixin",
    "ScopedRawIdWidget",
    "StaffRoleAdmin",
    "TenantAdminForm",
    "TenantScopedAdmin",
    "TenantScopedInline",
    "request_staff_client_ids",
    "request_staff_role",
]
