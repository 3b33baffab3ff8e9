"""The staff admin site: its titles (the brand, ``settings.BRAND_NAME``), the read-only audit
log, and the sign-in lockouts (django-axes' attempts and logins) with the unlock action, for
agency admins only."""

from __future__ import annotations

from axes.models import AccessAttempt, AccessLog
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .admin_base import (
    AGENCY_ADMIN,
    ClientListFilter,
    LargeTableAdminMixin,
    StaffRoleAdmin,
    TenantScopedAdmin,
    request_staff_role,
)
from .audit import audit_log, request_ip
from .models import AuditLogEntry

admin.site.site_header = settings.BRAND_NAME
admin.site.site_title = settings.BRAND_NAME
admin.site.index_title = _("Администрирование")


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(LargeTableAdminMixin, TenantScopedAdmin):
    """Append-only evidence: nobody adds, edits or deletes entries here, and there are no bulk
    actions. Account managers see their clients' entries; agency-wide ones (no client) only
    agency admins."""

    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None

    list_display = (
        "at",
        "actor_label",
        "client",
        "source",
        "action",
        "object_type",
        "object_repr",
    )
    list_filter = ("source", "action", ClientListFilter)
    list_select_related = ("client",)
    search_fields = ("=object_id", "=actor_label")
    search_help_text = _("Точное совпадение: id объекта или имя пользователя.")
    ordering = ("-at", "-id")

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if request_staff_role(request) == AGENCY_ADMIN:
            return queryset
        return super().scope_queryset(request, queryset)


# --------------------------------------------------------------------------------------------
# Sign-in lockouts (django-axes; AXES_ENABLE_ADMIN is off so that these admins, with role
# permissions, are the only ones)


@admin.register(AccessAttempt)
class AccessAttemptAdmin(StaffRoleAdmin):
    """Failed sign-ins per username and address; a username or an address with
    AXES_FAILURE_LIMIT failures is locked. "Разблокировать" (or deleting the rows) unlocks."""

    view_roles = (AGENCY_ADMIN,)
    add_roles = ()
    change_roles = ()
    delete_roles = (AGENCY_ADMIN,)
    actions = ["unlock"]
    list_display = (
        "attempt_time",
        "username",
        "ip_address",
        "path_info",
        "failures_since_start",
        "locked",
    )
    list_filter = ("path_info",)
    search_fields = ("=username", "=ip_address")
    ordering = ("-attempt_time",)
    fields = (
        "username",
        "ip_address",
        "user_agent",
        "path_info",
        "attempt_time",
        "failures_since_start",
    )
    readonly_fields = fields

    @admin.display(description=_("заблокирован"), boolean=True)
    def locked(self, obj: AccessAttempt) -> bool:
        return obj.failures_since_start >= settings.AXES_FAILURE_LIMIT

    @admin.action(description=_("Разблокировать вход (имя пользователя и адрес)"))
    def unlock(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Forget every failure of each selected row's username and of its address: both
        locks are lifted. Audited."""
        pairs = set(queryset.values_list("username", "ip_address"))
        removed = 0
        for username, ip_address in sorted(pairs, key=str):
            removed += axes_reset(ip=ip_address, username=username, ip_or_username=True)
            audit_log(
                action="login_unlocked",
                source="admin",
                actor=request.user,
                details={"username": username, "ip": ip_address},
                ip=request_ip(request),
            )
        self.message_user(
            request,
            _("Вход разблокирован: %(pairs)s (удалено записей о неудачных попытках: %(removed)s).")
            % {"pairs": len(pairs), "removed": removed},
            messages.SUCCESS,
        )


@admin.register(AccessLog)
class AccessLogAdmin(StaffRoleAdmin):
    """Successful sign-ins (and sign-outs): evidence, read only."""

    view_roles = (AGENCY_ADMIN,)
    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None
    list_display = ("attempt_time", "logout_time", "username", "ip_address", "path_info")
    search_fields = ("=username", "=ip_address")
    ordering = ("-attempt_time",)
    fields = ("username", "ip_address", "user_agent", "path_info", "attempt_time", "logout_time")
    readonly_fields = fields
