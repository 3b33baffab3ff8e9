"""Admin of scoring runs and settings: progress, recompute now, schedule, charts.

- Scoring runs: a read-only record of every run (status in colour, progress, stage, duration;
  failed runs in red with their error). A run's page shows the fitted parameters, the holdout
  check, stage timings and the RFM transitions matrix, and refreshes itself while the run is
  pending or running.
- "Пересчитать сейчас" (``scoringrun/recompute/``): every client of the signed-in person with
  its last run and the next run of the daily schedule; agency admins and account managers start
  a run (``scoring_run_request``: one at a time per client, sent to a worker after commit),
  analysts only look.
- "Аналитика" (``scoringrun/analytics/<client>/``): the RFM grid as a heatmap (customer counts
  per R × FM cell, from the client's CustomerScore rows) and the cohort retention triangle
  (``cohort_table`` over the paid orders of ``load_paid_orders``) when the client's tier has
  cohort analysis (``clients.tiers``); otherwise the refusal naming the tier that has it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_celery_beat.models import PeriodicTask

from agency.admin_base import (
    ACCOUNT_MANAGER,
    AGENCY_ADMIN,
    ClientListFilter,
    TenantAdminForm,
    TenantScopedAdmin,
    access_client_by_id,
    request_staff_role,
)
from agency.admin_jobs import JobAdminMixin
from agency.audit import request_ip
from agency.i18n import in_client_zone
from agency.roles import staff_clients
from clients.models import Client
from clients.tiers import TierLimitError, tier_require

from . import rfm
from .cohorts import cohort_table, cohort_triangle
from .labels import rfm_segment_label
from .models import CustomerScore, ScoringRun, ScoringSettings
from .services import (
    SCORING_SETTING_BOUNDS,
    ScoringRunActive,
    ScoringSettingsError,
    load_paid_orders,
    scoring_run_request,
    scoring_settings_save,
    scoring_settings_validate,
)

DAILY_TASK = "segments.tasks.scoring_daily_task"
RECOMPUTE_ROLES = (AGENCY_ADMIN, ACCOUNT_MANAGER)
COHORT_METRICS = {
    "retention_pct": gettext_lazy("удержание, % покупателей когорты"),
    "cumulative_revenue_per_customer": gettext_lazy(
        "накопленная выручка на покупателя, ₽ (CLV когорты)"
    ),
}
COHORTS_SHOWN = 24  # the latest cohorts in the triangle; older ones are summed up in a note


def can_recompute(request: HttpRequest) -> bool:
    return request_staff_role(request) in RECOMPUTE_ROLES


def _run_url(site: str, run_id: int) -> str:
    return reverse(f"{site}:segments_scoringrun_change", args=[run_id])


# --------------------------------------------------------------------------------------------
# Reads for the pages (no writes here)


def rfm_grid(client: Client) -> dict[str, Any]:
    """Customers per (R, FM) cell of the client's current scores, with the cell's segment.

    FM is round-half-up((F + M) / 2), the grid of ``segments.rfm``. Rows R 5..1 (best first),
    columns FM 1..5; ``intensity`` is the cell's count over the largest cell's.
    """
    counts: dict[tuple[int, int], int] = {}
    rows = (
        CustomerScore.objects.for_client(client)
        .filter(r_score__isnull=False)
        .values("r_score", "f_score", "m_score")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        fm = (row["f_score"] + row["m_score"] + 1) // 2
        key = (row["r_score"], fm)
        counts[key] = counts.get(key, 0) + row["n"]
    scored = sum(counts.values())
    largest = max(counts.values(), default=0)
    grid = []
    for r in range(5, 0, -1):
        cells = []
        for fm in range(1, 6):
            n = counts.get((r, fm), 0)
            intensity = n / largest if largest else 0.0
            cells.append(
                {
                    "r": r,
                    "fm": fm,
                    "count": n,
                    "share": 100.0 * n / scored if scored else 0.0,
                    "segment": rfm.SEGMENT_GRID[r - 1][fm - 1],
                    "label": rfm_segment_label(rfm.SEGMENT_GRID[r - 1][fm - 1]),
                    "background": f"rgba(32, 84, 147, {0.06 + 0.84 * intensity:.3f})",
                    "dark": intensity > 0.5,
                }
            )
        grid.append({"r": r, "cells": cells})
    by_segment = {name: 0 for name in rfm.SEGMENTS}
    for (r, fm), n in counts.items():
        by_segment[rfm.SEGMENT_GRID[r - 1][fm - 1]] += n
    total = CustomerScore.objects.for_client(client).count()
    return {
        "grid": grid,
        "scored": scored,
        "without_orders": total - scored,
        "segments": [
            {"name": name, "label": rfm_segment_label(name), "count": n}
            for name, n in by_segment.items()
        ],
    }


def cohort_view(client: Client, *, as_of: dt.date, metric: str) -> dict[str, Any]:
    """The cohort triangle of ``metric`` from the client's paid orders up to ``as_of``."""
    table = cohort_table(load_paid_orders(client), as_of=as_of)
    if table.empty:
        return {"months": [], "rows": [], "hidden": 0}
    values = cohort_triangle(table, metric)
    sizes = table.groupby("cohort")["customers"].first()
    hidden = max(len(values) - COHORTS_SHOWN, 0)
    values = values.iloc[-COHORTS_SHOWN:]
    months = [int(m) for m in values.columns]
    # Colour scale: month 0 is 100 % retention by definition, so scale on the later months.
    later = values[[m for m in values.columns if m > 0]] if metric == "retention_pct" else values
    top = float(later.max().max()) if later.size and later.notna().any().any() else 0.0
    rows = []
    for cohort, series in values.iterrows():
        cells = []
        for month in months:
            value = series.get(month)
            if value is None or value != value:  # NaN: past the end of the data
                cells.append(None)
                continue
            intensity = min(float(value) / top, 1.0) if top > 0 else 0.0
            cells.append(
                {
                    "month": month,
                    "value": float(value),
                    "background": f"rgba(46, 125, 50, {0.06 + 0.84 * intensity:.3f})",
                    "dark": intensity > 0.5,
                }
            )
        rows.append({"cohort": cohort, "customers": int(sizes[cohort]), "cells": cells})
    return {"months": months, "rows": rows, "hidden": hidden}


def _next_tick(schedule: Any, after: dt.datetime) -> dt.datetime:
    """The first time the beat schedule fires after ``after`` (crontab or interval)."""
    if hasattr(schedule, "remaining_delta"):  # crontab
        start, ends_in, _now = schedule.remaining_delta(after)
        return start + ends_in
    if hasattr(schedule, "run_every"):  # interval
        return after + schedule.run_every
    return timezone.now() + schedule.remaining_estimate(after)


def daily_schedule(now: dt.datetime) -> tuple[PeriodicTask | None, dt.datetime | None]:
    """The daily fan-out's periodic task and its next firing after ``now`` (None if paused)."""
    task = (
        PeriodicTask.objects.filter(task=DAILY_TASK)
        .select_related("crontab", "interval")
        .order_by("pk")
        .first()
    )
    if task is None or not task.enabled:
        return task, None
    return task, _next_tick(task.schedule, now)


def scoring_overview(clients: QuerySet, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Per client: the last run, the last successful run and the next scheduled run.

    The daily fan-out skips a client that already has a run that (client-local) day, and
    inactive clients: the next run shown accounts for both.
    """
    now = now or timezone.now()
    latest = ScoringRun.objects.filter(client=OuterRef("pk")).order_by("-created_at", "-pk")
    clients = clients.annotate(
        last_run_id=Subquery(latest.values("pk")[:1]),
        last_success_id=Subquery(
            latest.filter(status=ScoringRun.Status.SUCCEEDED).values("pk")[:1]
        ),
    ).order_by("name")
    clients = list(clients)
    run_ids = {c.last_run_id for c in clients} | {c.last_success_id for c in clients}
    runs = ScoringRun.objects.unscoped().in_bulk([pk for pk in run_ids if pk])
    task, first_tick = daily_schedule(now)
    out = []
    for client in clients:
        last = runs.get(client.last_run_id)
        next_run, note = None, ""
        if task is None:
            note = _("расписание не создано: manage.py setup_periodic_tasks")
        elif first_tick is None:
            note = _("ежедневный пересчёт приостановлен")
        elif not client.is_active:
            note = _("клиент неактивен: по расписанию не пересчитывается")
        else:
            next_run = first_tick
            today = timezone.localtime(now, client.tzinfo).date()
            if (
                last is not None
                and timezone.localtime(last.created_at, client.tzinfo).date() == today
                and timezone.localtime(next_run, client.tzinfo).date() == today
            ):
                # Already run today: the fan-out of today will skip this client.
                next_run = _next_tick(task.schedule, next_run)
        out.append(
            {
                "client": client,
                "last": last,
                "last_success": runs.get(client.last_success_id),
                "active": last is not None and last.is_active,
                "next_run": next_run,
                "note": note,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Settings


class ScoringSettingsForm(TenantAdminForm):
    """The service's check (``scoring_settings_validate``), its refusal shown at the field.
    A form sent without the number of recommendations (added later) keeps the stored one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "recommendations_count" in self.fields:
            self.fields["recommendations_count"].required = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "recommendations_count" in self.fields and cleaned.get("recommendations_count") is None:
            cleaned["recommendations_count"] = self.instance.recommendations_count
        values = {name: cleaned.get(name) for name in SCORING_SETTING_BOUNDS}
        try:
            scoring_settings_validate(values)
        except ScoringSettingsError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


@admin.register(ScoringSettings)
class ScoringSettingsAdmin(TenantScopedAdmin):
    """One row per client (a unique constraint); a client without one uses the defaults."""

    form = ScoringSettingsForm
    audited_by_services = ("add", "change")
    list_display = (
        "client",
        "onboarding_days",
        "at_risk_after_days",
        "win_back_after_days",
        "clv_months",
        "monthly_discount_rate",
        "gross_margin",
        "holdout_days",
        "recommendations_count",
    )
    list_filter = (ClientListFilter,)
    list_select_related = ("client",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        return ("client",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        saved = scoring_settings_save(
            client=obj.client,
            values={name: form.cleaned_data[name] for name in SCORING_SETTING_BOUNDS},
            actor=request.user,
            source="admin",
            ip=request_ip(request),
        )
        obj.pk = saved.pk
        obj._state.adding = False


# --------------------------------------------------------------------------------------------
# Runs


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return _("%(seconds).1f с") % {"seconds": value}
    minutes, seconds = divmod(int(round(value)), 60)
    return _("%(minutes)s мин %(seconds)02d с") % {"minutes": minutes, "seconds": seconds}


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}".replace(",", " ")
    return str(value)


def _table(headers: list[str], rows: list[list[Any]], css: str = "") -> SafeString:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html(
        '<table class="scoring-table {}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        css,
        head,
        body,
    )


@admin.register(ScoringRun)
class ScoringRunAdmin(JobAdminMixin, TenantScopedAdmin):
    """Runs are created by "Пересчитать сейчас", the daily schedule, the API or the CLI, and
    are a record: nobody adds, edits or deletes them here."""

    add_roles = ()
    change_roles = ()
    delete_roles = ()
    actions = None
    change_form_template = "admin/segments/scoringrun/change_form.html"
    change_list_template = "admin/segments/scoringrun/change_list.html"
    status_css = "scoring-status"

    list_display = (
        "created_at",
        "client",
        "status_badge",
        "progress_bar",
        "stage",
        "duration",
        "customers",
        "source",
        "error_excerpt",
    )
    list_display_links = ("created_at",)
    list_filter = (ClientListFilter, "status", "source")
    list_select_related = ("client", "triggered_by")
    date_hierarchy = None
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "client",
                    "status_badge",
                    "progress_bar",
                    "stage",
                    "error",
                    "source",
                    "triggered_by",
                    "as_of",
                    "created_at",
                    "started_at",
                    "heartbeat",
                    "attempt",
                    "finished_at",
                    "duration",
                    "customers",
                    "orders",
                )
            },
        ),
        (gettext_lazy("Модели"), {"fields": ("parameters_table", "holdout_table")}),
        (gettext_lazy("Этапы"), {"fields": ("stage_table",)}),
        (gettext_lazy("Переходы между RFM-сегментами"), {"fields": ("transitions_table",)}),
    )
    readonly_fields = tuple(f for _name, fs in fieldsets for f in fs["fields"])

    # -- list columns ------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("длительность"), ordering="duration_seconds")
    def duration(self, obj: ScoringRun) -> str:
        if obj.duration_seconds is not None:
            return _seconds(obj.duration_seconds)
        if obj.status == ScoringRun.Status.RUNNING and obj.started_at:
            return _seconds((timezone.now() - obj.started_at).total_seconds()) + " …"
        return "—"

    @admin.display(description=gettext_lazy("ошибка"))
    def error_excerpt(self, obj: ScoringRun) -> str:
        if not obj.error:
            return ""
        text = obj.error if len(obj.error) <= 160 else obj.error[:157] + "…"
        return format_html('<span class="scoring-error" style="color: #ba2121">{}</span>', text)

    # -- run page ----------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("параметры моделей"))
    def parameters_table(self, obj: ScoringRun) -> str:
        params = obj.parameters or {}
        if not params:
            return "—"
        rows = []
        names = {
            "bgnbd": _("BG/NBD (покупки, дни)"),
            "gamma_gamma": _("Gamma-Gamma (чек)"),
            "recommendations": _("Рекомендации товаров"),
        }
        for model, values in params.items():
            for name, value in values.items():
                rows.append([names.get(model, model), name, _number(value, 6)])
        return _table([_("модель"), _("параметр"), _("значение")], rows, "scoring-parameters")

    @admin.display(description=gettext_lazy("проверка на контрольном периоде"))
    def holdout_table(self, obj: ScoringRun) -> str:
        holdout = obj.holdout or {}
        if not holdout:
            return "—"
        if "skipped" in holdout:
            return _("Не проводилась: %(reason)s") % {"reason": holdout["skipped"]}
        summary = format_html(
            _(
                "<p>Калибровка до {} включительно, контрольный период {} дн., покупателей {}. "
                "Повторных покупок: прогноз {}, факт {}. <strong>MAE {}</strong> на покупателя.</p>"
            ),
            holdout.get("calibration_end", "—"),
            holdout.get("holdout_days", _number(holdout.get("duration"), 0)),
            holdout.get("customers", "—"),
            _number(holdout.get("predicted"), 1),
            _number(holdout.get("actual"), 1),
            _number(holdout.get("mae"), 4),
        )
        rows = [
            [
                bucket["frequency"],
                bucket["customers"],
                _number(bucket["predicted_mean"], 3),
                _number(bucket["actual_mean"], 3),
                _number(bucket["mae"], 3),
            ]
            for bucket in holdout.get("by_frequency", [])
        ]
        table = _table(
            [
                _("повторных покупок в калибровке"),
                _("покупателей"),
                _("прогноз (среднее)"),
                _("факт"),
                "MAE",
            ],
            rows,
            "scoring-holdout",
        )
        return format_html("{}{}", summary, table)

    @admin.display(description=gettext_lazy("время этапов"))
    def stage_table(self, obj: ScoringRun) -> str:
        seconds = obj.stage_seconds or {}
        if not seconds:
            return "—"
        rows = [[stage, f"{value:.3f}"] for stage, value in seconds.items()]
        rows.append(
            [format_html("<strong>{}</strong>", _("всего")), _number(obj.duration_seconds, 3)]
        )
        return _table([_("этап"), _("секунд")], rows, "scoring-stages")

    @admin.display(description=gettext_lazy("матрица переходов"))
    def transitions_table(self, obj: ScoringRun) -> str:
        moves = obj.rfm_transitions or {}
        if not moves:
            return _("Нет предыдущего запуска для сравнения.")
        sources = [s for s in rfm.SEGMENTS if s in moves] + sorted(set(moves) - set(rfm.SEGMENTS))
        present = {dst for row in moves.values() for dst in row}
        targets = [s for s in rfm.SEGMENTS if s in present] + sorted(present - set(rfm.SEGMENTS))
        rows = []
        for src in sources:
            row = moves[src]
            cells = [
                format_html("<strong>{}</strong>", n) if dst == src and n else (n or "")
                for dst, n in ((dst, row.get(dst, 0)) for dst in targets)
            ]
            name = format_html("<strong>{}</strong>", rfm_segment_label(src))
            rows.append([name, *cells, sum(row.values())])
        headers = [rfm_segment_label(dst) for dst in targets]
        return _table([_("было \\ стало"), *headers, _("всего")], rows, "scoring-transitions")

    # -- pages -------------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = extra_context or {}
        extra_context["recompute_url"] = reverse(
            f"{self.admin_site.name}:segments_scoringrun_recompute"
        )
        extra_context["can_recompute"] = can_recompute(request)
        return super().changelist_view(request, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            context["analytics_url"] = reverse(
                f"{self.admin_site.name}:segments_scoringrun_analytics", args=[obj.client_id]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "recompute/",
                self.admin_site.admin_view(self.recompute_view),
                name="segments_scoringrun_recompute",
            ),
            path(
                "analytics/<int:client_id>/",
                self.admin_site.admin_view(self.analytics_view),
                name="segments_scoringrun_analytics",
            ),
            *super().get_urls(),
        ]

    def recompute_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the user's clients with last and next runs. POST client=<id>: start a run."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        site = self.admin_site.name
        if request.method == "POST":
            if not can_recompute(request):
                raise PermissionDenied
            client = access_client_by_id(request=request, client_id=request.POST.get("client"))
            try:
                run = scoring_run_request(
                    client=client, actor=request.user, source="admin", ip=request_ip(request)
                )
            except ScoringRunActive as exc:
                message = _("Пересчёт клиента «%(name)s» уже идёт.") % {"name": client}
                messages.info(request, message)
                return HttpResponseRedirect(_run_url(site, exc.run.pk))
            messages.success(request, _("Пересчёт клиента «%(name)s» запущен.") % {"name": client})
            return HttpResponseRedirect(_run_url(site, run.pk))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Пересчёт скоринга"),
            "subtitle": None,
            "opts": self.model._meta,
            "rows": scoring_overview(staff_clients(request.user)),
            "can_recompute": can_recompute(request),
            "now": timezone.now(),
        }
        request.current_app = site
        return TemplateResponse(request, "admin/segments/scoring_overview.html", context)

    def analytics_view(self, request: HttpRequest, client_id: int) -> HttpResponse:
        """Every staff role sees the charts of a client it works with; others get a 404."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        client = access_client_by_id(request=request, client_id=client_id)
        metric = request.GET.get("metric", "retention_pct")
        if metric not in COHORT_METRICS:
            metric = "retention_pct"
        as_of = timezone.localtime(timezone.now(), client.tzinfo).date()
        grid = rfm_grid(client)
        try:
            tier_require(client=client, feature="cohorts")
        except TierLimitError as exc:
            cohorts, cohorts_refusal = None, exc.message
        else:
            cohorts, cohorts_refusal = cohort_view(client, as_of=as_of, metric=metric), ""
        last_success = (
            ScoringRun.objects.for_client(client)
            .filter(status=ScoringRun.Status.SUCCEEDED)
            .order_by("-created_at")
            .first()
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Аналитика: %(client)s") % {"client": client.name},
            "subtitle": None,
            "opts": self.model._meta,
            "client": client,
            "rfm": grid,
            "segment_chart": {
                "labels": [s["label"] for s in grid["segments"]],
                "counts": [s["count"] for s in grid["segments"]],
            },
            "last_success": last_success,
            "cohorts": cohorts,
            "cohorts_refusal": cohorts_refusal,
            "metric": metric,
            "metrics": COHORT_METRICS,
            "as_of": as_of,
            "cohorts_shown": COHORTS_SHOWN,
        }
        request.current_app = self.admin_site.name
        with in_client_zone(client):
            return TemplateResponse(request, "admin/segments/analytics.html", context).render()
