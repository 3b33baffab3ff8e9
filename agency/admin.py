"""The staff admin site: its titles (the brand, ``settings.BRAND_NAME``) and the read-only audit
log."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .admin_base import (
    AGENCY_ADMIN,
    ClientListFilter,
    LargeTableAdminMixin,
    TenantScopedAdmin,
    request_staff_role,
)
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
    search_help_text = "Точное совпадение: id объекта или имя пользователя."
    ordering = ("-at", "-id")

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if request_staff_role(request) == AGENCY_ADMIN:
            return queryset
        return super().scope_queryset(request, queryset)
