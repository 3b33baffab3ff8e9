"""Portal page of the client's audiences: what each ad cabinet holds, who was held back and
why, and the recent syncs (read-only: staff manage audiences in the admin)."""

from __future__ import annotations

from django.db.models import Prefetch
from django.views.generic import ListView

from agency.portal import ClientPortalMixin

from .models import Audience, SyncRun

RECENT_RUNS = 5


class AudienceListView(ClientPortalMixin, ListView):
    template_name = "portal/audiences.html"
    context_object_name = "audiences"

    def get_queryset(self):
        runs = self.scoped(SyncRun).order_by("-created_at")
        audiences = (
            self.scoped(Audience)
            .select_related("destination", "segment")
            .prefetch_related(Prefetch("sync_runs", queryset=runs, to_attr="all_runs"))
            .order_by("name")
        )
        for audience in audiences:
            audience.recent_runs = audience.all_runs[:RECENT_RUNS]
        return audiences

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["running"] = any(
            run.status in (SyncRun.Status.PENDING, SyncRun.Status.RUNNING)
            for audience in context["audiences"]
            for run in audience.recent_runs
        )
        return context
