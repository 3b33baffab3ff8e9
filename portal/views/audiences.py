"""The client's audiences: what each ad cabinet holds, who was held back and why, and the recent
syncs (read-only: staff manage audiences in the admin)."""

from __future__ import annotations

from django.views.generic import ListView

from audiences.selectors import audiences_with_recent_runs

from ..mixins import ClientPortalMixin


class AudienceListView(ClientPortalMixin, ListView):
    template_name = "portal/audiences.html"
    context_object_name = "audiences"

    def get_queryset(self):
        return audiences_with_recent_runs(client=self.client)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["running"] = any(
            run.is_active for audience in context["audiences"] for run in audience.recent_runs
        )
        return context
