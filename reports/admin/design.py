"""Admin of test design and chain results.

- "Планы тестов цепочек" (ChainTestPlan): a chain's planned horizon, edited by hand or set from
  the calculator. The change list links the two pages below.
- "Калькулятор теста" (``chaintestplan/design/``): the same numbers as
  ``POST /api/v1/experiments/design/``. With a chain, ``reports.design.experiment_design`` (the
  tier's incrementality rule, the chain's 28-day flow) and optionally the plan; without one,
  the pure calculation (an agency planning aid that reads no client data).
- "Результаты цепочек" (``chaintestplan/results/``): the staff's chains, and one chain's
  results table (``reports.results.chain_results``) for a period.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agency.admin_base import (
    ACCOUNT_MANAGER,
    AGENCY_ADMIN,
    TenantScopedAdmin,
    request_staff_client_ids,
    request_staff_role,
)
from agency.audit import request_ip
from agency.errors import ServiceError
from agency.tenancy import get_from_scoped_or_404
from campaigns.models import TriggerChain

from .. import uplift
from ..design import chain_test_plan_set, experiment_design
from ..models import ChainTestPlan
from ..results import chain_results

PLAN_ROLES = (AGENCY_ADMIN, ACCOUNT_MANAGER)


class DesignForm(forms.Form):
    baseline_rate = forms.FloatField(
        label=gettext_lazy("конверсия контрольной группы (доля, 0..1)"), initial=0.05
    )
    mde_absolute = forms.FloatField(
        label=gettext_lazy("минимальный эффект, абсолютный (0.01 = +1 п.п.)"), required=False
    )
    mde_relative = forms.FloatField(
        label=gettext_lazy("или относительный (0.2 = +20 %)"), required=False
    )
    alpha = forms.FloatField(label=gettext_lazy("уровень значимости"), initial=0.05)
    power = forms.FloatField(label=gettext_lazy("мощность"), initial=0.8)
    treatment_share = forms.FloatField(label=gettext_lazy("доля основной группы"), initial=0.5)
    eligible_per_day = forms.FloatField(
        label=gettext_lazy("людей в день"), required=False, min_value=0
    )
    chain = forms.ModelChoiceField(
        label=gettext_lazy("цепочка (поток за 28 дней, тариф клиента)"),
        queryset=TriggerChain.objects.none(),
        required=False,
    )
    save_plan = forms.BooleanField(label=gettext_lazy("сохранить как план теста"), required=False)

    def __init__(self, *args: Any, chains: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["chain"].queryset = chains

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if (cleaned.get("mde_absolute") is None) == (cleaned.get("mde_relative") is None):
            self.add_error(
                "mde_absolute",
                _("Укажите ровно одно из двух: абсолютный или относительный эффект."),
            )
        if cleaned.get("save_plan") and cleaned.get("chain") is None:
            self.add_error("chain", _("Чтобы сохранить план, выберите цепочку."))
        return cleaned


class ResultsPeriodForm(forms.Form):
    date_from = forms.DateField(label=gettext_lazy("вход с"), required=False)
    date_to = forms.DateField(label=gettext_lazy("по"), required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_from", _("Начало периода позже его конца."))
        return cleaned


@admin.register(ChainTestPlan)
class ChainTestPlanAdmin(TenantScopedAdmin):
    list_display = (
        "chain",
        "client",
        "planned_end",
        "planned_treatment_n",
        "planned_control_n",
        "baseline_rate",
        "mde_absolute",
    )
    list_select_related = ("chain", "client")
    readonly_fields = ("created_at", "updated_at")
    change_roles = PLAN_ROLES
    add_roles = PLAN_ROLES
    delete_roles = PLAN_ROLES

    def _chains(self, request: HttpRequest):
        return (
            TriggerChain.objects.unscoped()
            .filter(client_id__in=sorted(request_staff_client_ids(request)))
            .select_related("client")
            .order_by("client__name", "priority", "name")
        )

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.model._meta,
        }

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {
            **(extra_context or {}),
            "design_url": reverse(f"{self.admin_site.name}:reports_chaintestplan_design"),
            "results_url": reverse(f"{self.admin_site.name}:reports_chaintestplan_results"),
        }
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("design/", view(self.design_view), name="reports_chaintestplan_design"),
            path("results/", view(self.results_index_view), name="reports_chaintestplan_results"),
            path(
                "results/<int:chain_id>/",
                view(self.results_view),
                name="reports_chaintestplan_chain_results",
            ),
            *super().get_urls(),
        ]

    def design_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        chains = self._chains(request)
        form = DesignForm(request.POST or None, chains=chains)
        design = None
        if request.method == "POST" and form.is_valid():
            data = dict(form.cleaned_data)
            chain = data.pop("chain")
            save_plan = data.pop("save_plan")
            try:
                if chain is not None:
                    design = experiment_design(client=chain.client, chain=chain, **data)
                    if save_plan:
                        if request_staff_role(request) not in PLAN_ROLES:
                            raise PermissionDenied
                        plan = chain_test_plan_set(
                            chain=chain,
                            design=design,
                            actor=request.user,
                            source="admin",
                            ip=request_ip(request),
                        )
                        messages.success(
                            request,
                            _("План теста сохранён: вывод не раньше %(date)s.")
                            % {"date": plan.planned_end.strftime("%d.%m.%Y")},
                        )
                else:
                    design = uplift.sample_size_two_proportions(**data).as_dict()
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, str(exc.message))
                design = None
            except ValueError as exc:
                field = str(exc).split(":", 1)[0]
                form.add_error(field if field in form.fields else None, str(exc))
        context = {
            **self._context(request, _("Калькулятор теста инкрементальности")),
            "form": form,
            "design": design,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/reports/design.html", context)

    def results_index_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self._context(request, _("Результаты цепочек")),
            "chains": self._chains(request).exclude(status=TriggerChain.Status.DRAFT),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/reports/results.html", context)

    def results_view(self, request: HttpRequest, chain_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        chain = get_from_scoped_or_404(self._chains(request), pk=chain_id)
        form = ResultsPeriodForm(request.GET or None)
        period: dict[str, dt.date | None] = {}
        if form.is_bound and form.is_valid():
            period = {
                "date_from": form.cleaned_data["date_from"],
                "date_to": form.cleaned_data["date_to"],
            }
        results = chain_results(chain=chain, **period) if not form.errors else None
        context = {
            **self._context(request, _("Результаты цепочки: %(chain)s") % {"chain": chain.name}),
            "chain": chain,
            "form": form,
            "results": results,
            "rows": _rows(results) if results else [],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/reports/results.html", context)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _interval(pair: list | None, percent: bool = True) -> str:
    if not pair:
        return "—"
    if percent:
        return f"[{pair[0] * 100:.1f}; {pair[1] * 100:.1f}] п.п."
    return f"[{pair[0]}; {pair[1]}]"


def _row(label: str, figures: dict[str, Any]) -> dict[str, Any]:
    u = figures["uplift"]
    relative = u["relative_ci"]
    return {
        "label": label,
        "treatment": figures["treatment"],
        "holdout": figures["holdout"],
        "rate_treatment": _pct(figures["treatment"]["conversion_rate"]),
        "rate_holdout": _pct(figures["holdout"]["conversion_rate"]),
        "absolute": "—" if u["absolute"] is None else f"{u['absolute'] * 100:+.2f} п.п.",
        "absolute_ci": _interval(u["absolute_ci"]),
        "relative": _pct(u["relative"]),
        "relative_ci": (
            f"[{relative[0] * 100:.0f} %; {relative[1] * 100:.0f} %]" if relative else "—"
        ),
        "p_value": "—" if u["p_value"] is None else f"{u['p_value']:.4f}",
        "difference": u["revenue_per_person_difference"] or "—",
        "difference_ci": _interval(u["revenue_per_person_difference_ci"], percent=False),
        "incremental_revenue": u["incremental_revenue"] or "—",
        "enough_data": figures["enough_data"],
    }


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table: all people, each step, each month."""
    rows = [_row(_("Все вошедшие"), results)]
    for step in results["steps"]:
        label = _("Шаг %(n)s: %(t)s") % {"n": step["position"], "t": step["template"]}
        rows.append(_row(label, step))
    for month in results["months"]:
        rows.append(_row(month["month"], month))
    return rows
