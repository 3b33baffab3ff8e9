"""The client's CSV imports, and each import's rejected rows as CSV (media files are never
served publicly)."""

from __future__ import annotations

from django.http import Http404
from django.views.generic import ListView, View

from agency.exports import csv_file_response
from clients.models import ClientMembership, ImportJob
from clients.selectors import import_jobs_list

from ..mixins import ClientPortalMixin


class ImportJobListView(ClientPortalMixin, ListView):
    template_name = "portal/imports.html"
    context_object_name = "jobs"
    paginate_by = 25

    def get_queryset(self):
        return import_jobs_list(client=self.client)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["running"] = any(job.is_active for job in context["jobs"])
        return context


class ImportJobErrorsView(ClientPortalMixin, View):
    # The rejected rows carry the raw values people sent (personal data): not for viewers.
    allowed_roles = (ClientMembership.Role.OWNER, ClientMembership.Role.ANALYST)

    def get(self, request, *args, **kwargs):
        job = self.get_scoped_object_or_404(ImportJob, pk=kwargs["pk"])
        if not job.error_report:
            raise Http404("no error report")
        return csv_file_response(job.error_report.open("rb"), f"import-{job.pk}-errors.csv")
