"""Admin of the value sent back to the ad systems: Yandex Direct bid modifier change sets
(with each item's result), their rollback (an action and a button), and the plan page (the
diff of the recommendations against the campaigns, a dry run, then apply).

Every entry point calls ``reports.bidding``: the same tier rule, points and per-item results as
the API; the services write the audit log.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.admin_base import ClientListFilter, TenantScopedAdmin, TenantScopedInline
from agency.audit import request_ip
from agency.errors import ServiceError
from agency.roles import staff_clients

from ..bidding import bid_modifier_apply, bid_modifier_change_rollback
from ..models import BidModifierChange, BidModifierChangeItem


class BidModifierChangeItemInline(TenantScopedInline):
    model = BidModifierChangeItem
    fields = (
        "campaign_id",
        "audience_name",
        "retargeting_list_id",
        "modifier_id",
        "previous_value",
        "new_value",
        "status",
        "error",
        "rollback_status",
        "rollback_error",
    )
    readonly_fields = fields
    can_delete = False
    add_roles = ()
    delete_roles = ()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PlanForm(forms.Form):
    client = forms.ModelChoiceField(queryset=None, label=gettext_lazy("клиент"))
    campaign_ids = forms.CharField(
        label=gettext_lazy("кампании Директа"),
        help_text=gettext_lazy("id кампаний через запятую или пробел"),
    )
    exclude_bottom = forms.BooleanField(
        required=False, label=gettext_lazy("нижние 20 % по CLV исключить (0 %)")
    )
    ad_account_id = forms.IntegerField(
        required=False,
        min_value=1,
        label=gettext_lazy("аккаунт Директа (id)"),
        help_text=gettext_lazy("нужен, если у клиента несколько аккаунтов Директа"),
    )

    def __init__(self, *args: Any, clients: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["client"].queryset = clients

    def clean_campaign_ids(self) -> list[int]:
        raw = self.cleaned_data["campaign_ids"].replace(",", " ").split()
        if not raw or not all(part.isdigit() and int(part) > 0 for part in raw):
            raise forms.ValidationError(_("id кампаний — положительные целые числа"))
        return [int(part) for part in raw]


@admin.register(BidModifierChange)
class BidModifierChangeAdmin(TenantScopedAdmin):
    """Change sets are made by the plan page (or the API) and never edited or deleted: they
    are the evidence of what was changed in Direct and the way back."""

    add_roles = ()
    delete_roles = ()
    audited_by_services = ("add", "change", "delete")
    change_form_template = "admin/reports/bidmodifierchange/change_form.html"
    change_list_template = "admin/reports/bidmodifierchange/change_list.html"
    inlines = [BidModifierChangeItemInline]
    list_display = (
        "created_at",
        "client",
        "ad_account",
        "status",
        "campaigns",
        "item_counts",
        "created_by",
        "rolled_back_at",
    )
    list_filter = (ClientListFilter, "status")
    list_select_related = ("client", "ad_account")
    readonly_fields = (
        "client",
        "ad_account",
        "campaign_ids",
        "exclude_bottom",
        "status",
        "message",
        "units_remaining",
        "created_by",
        "created_at",
        "rolled_back_at",
    )
    fields = readonly_fields
    actions = ["rollback_selected"]

    @admin.display(description=gettext_lazy("кампании"))
    def campaigns(self, obj: BidModifierChange) -> str:
        return ", ".join(str(c) for c in obj.campaign_ids)

    @admin.display(description=gettext_lazy("применено / всего"))
    def item_counts(self, obj: BidModifierChange) -> str:
        items = BidModifierChangeItem.objects.for_client(obj.client_id).filter(change=obj)
        applied = items.filter(status=BidModifierChangeItem.Status.APPLIED).count()
        return f"{applied} / {items.count()}"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Nothing is edited on the form; the rollback needs the change role.
        return False

    def _may_write(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_allows(request, TenantScopedAdmin.change_roles, obj)

    def _rollback(self, request: HttpRequest, change: BidModifierChange) -> None:
        try:
            change = bid_modifier_change_rollback(
                change=change, actor=request.user, source="admin", ip=request_ip(request)
            )
        except ServiceError as exc:
            self.message_user(request, f"{change}: {exc.message}", messages.ERROR)
            return
        if change.status == BidModifierChange.Status.ROLLED_BACK:
            self.message_user(request, _("%(change)s: откачено.") % {"change": change})
        else:
            self.message_user(
                request,
                _("%(change)s: откачено частично: %(message)s")
                % {"change": change, "message": change.message or _("см. ошибки элементов")},
                messages.WARNING,
            )

    @admin.action(description=gettext_lazy("Откатить выбранные изменения"))
    def rollback_selected(self, request: HttpRequest, queryset: Any) -> None:
        if not self._may_write(request):
            raise PermissionDenied
        for change in queryset:
            self._rollback(request, change)

    def rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        change = self.get_object(request, unquote(object_id))
        if change is None:
            raise Http404
        if request.method != "POST" or not self._may_write(request, change):
            raise PermissionDenied
        self._rollback(request, change)
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:reports_bidmodifierchange_change", args=[change.pk])
        )

    def plan_view(self, request: HttpRequest) -> HttpResponse:
        if not self._may_write(request):
            raise PermissionDenied
        clients = staff_clients(request.user).order_by("name")
        form = PlanForm(request.POST or None, clients=clients)
        plan = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            apply = "apply" in request.POST
            try:
                plan, change = bid_modifier_apply(
                    client=data["client"],
                    campaign_ids=data["campaign_ids"],
                    exclude_bottom=data["exclude_bottom"],
                    ad_account_id=data["ad_account_id"],
                    dry_run=not apply,
                    actor=request.user,
                    source="admin",
                    ip=request_ip(request),
                )
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                if apply and change is not None:
                    messages.success(
                        request,
                        _("%(change)s: %(status)s.")
                        % {"change": change, "status": change.get_status_display()},
                    )
                    return HttpResponseRedirect(
                        reverse(
                            f"{self.admin_site.name}:reports_bidmodifierchange_change",
                            args=[change.pk],
                        )
                    )
                if apply:
                    messages.info(request, _("Менять нечего: корректировки уже такие."))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Корректировки ставок Директа: план"),
            "subtitle": None,
            "opts": self.model._meta,
            "form": form,
            "plan": plan,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/reports/bidmodifierchange/plan.html", context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("plan/", view(self.plan_view), name="reports_bidmodifierchange_plan"),
            path(
                "<path:object_id>/rollback/",
                view(self.rollback_view),
                name="reports_bidmodifierchange_rollback",
            ),
            *super().get_urls(),
        ]

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        extra_context = dict(extra_context or {})
        change = self.get_object(request, unquote(object_id)) if object_id else None
        extra_context["may_rollback"] = bool(
            change is not None
            and self._may_write(request, change)
            and change.status != BidModifierChange.Status.ROLLED_BACK
        )
        return super().changeform_view(request, object_id, form_url, extra_context)
