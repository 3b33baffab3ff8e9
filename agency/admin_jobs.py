"""How the admin shows a background job (``agency.jobs.BackgroundJob``): one mixin for the CSV
imports, scoring runs and audience syncs.

- columns: the status in its colour (``status_badge``), a progress bar (``progress_bar``, from
  ``progress_percent``), the last heartbeat (``heartbeat``), the attempt number (``attempt``:
  above 1 when a worker was lost and another took the job over);
- ``job_fields``: the job's own fields, read-only on its page;
- the page of a pending or running job refreshes itself every ``auto_refresh_seconds`` (not once
  its worker is gone: ``is_stalled``), and a list refreshes at half that pace while a job it
  shows is active. The templates ``admin/jobs/change_form.html`` and
  ``admin/jobs/change_list.html`` write the refresh; a model's own templates extend them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

STATUS_COLOURS = {
    "pending": "#666666",
    "running": "#205493",
    "succeeded": "#2e7d32",
    "failed": "#ba2121",
}


class JobAdminMixin:
    """Mixed into the ``ModelAdmin`` of a job model, before the admin base class."""

    auto_refresh_seconds = 3
    change_form_template = "admin/jobs/change_form.html"
    change_list_template = "admin/jobs/change_list.html"
    status_colours: dict[str, str] = {}
    """Colours of the model's own terminal states, over :data:`STATUS_COLOURS`."""
    job_fields = (
        "status_badge",
        "progress_bar",
        "created_at",
        "started_at",
        "heartbeat",
        "attempt",
        "finished_at",
    )
    status_css = "job-status"

    @admin.display(description=_("статус"), ordering="status")
    def status_badge(self, obj: Any) -> str:
        colour = {**STATUS_COLOURS, **self.status_colours}.get(obj.status, "inherit")
        return format_html(
            '<strong class="{} {}-{}" style="color: {}">{}</strong>',
            self.status_css,
            self.status_css,
            obj.status,
            colour,
            obj.get_status_display(),
        )

    @admin.display(description=_("ход"))
    def progress_bar(self, obj: Any) -> str:
        percent = obj.progress_percent
        return format_html(
            '<progress value="{}" max="100" style="width: 10em">{}%</progress> {}%',
            percent,
            percent,
            percent,
        )

    @admin.display(description=_("признак жизни"), ordering="heartbeat_at")
    def heartbeat(self, obj: Any) -> str:
        if obj.heartbeat_at is None:
            return "—"
        label = timezone.localtime(obj.heartbeat_at).strftime("%d.%m.%Y %H:%M:%S")
        if obj.is_active and obj.is_stalled():
            return format_html(
                '<span style="color: #ba2121">{} — {}</span>',
                label,
                _("исполнитель не отвечает; задание будет отправлено заново"),
            )
        return label

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        return fields + tuple(name for name in self.job_fields if name not in fields)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            if any(job.is_active for job in context["cl"].result_list):
                context["auto_refresh_seconds"] = self.auto_refresh_seconds * 2
        return response

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None and obj.is_active and not obj.is_stalled():
            context["auto_refresh_seconds"] = self.auto_refresh_seconds
        return super().render_change_form(request, context, add, change, form_url, obj)
