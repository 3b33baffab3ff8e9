"""Portal pages of the client's customer base: dashboard, customers, imports."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import FileResponse, Http404
from django.shortcuts import redirect
from django.urls import path
from django.views.generic import DetailView, ListView, TemplateView, View

from agency.portal import ClientPortalMixin
from agency.roles import user_clients
from audiences.portal import AudienceListView

from .models import Customer, ImportJob, Order
from .normalize import NormalizationError, normalize_email, normalize_phone
from .selectors import client_base_summary, revenue_by_month


class PortalHomeView(LoginRequiredMixin, TemplateView):
    """The user's clients; straight to the dashboard when there is only one."""

    login_url = "portal:login"
    template_name = "portal/home.html"

    def get(self, request, *args, **kwargs):
        clients = list(user_clients(request.user).order_by("name")[:2])
        if len(clients) == 1:
            return redirect("portal:dashboard", client_slug=clients[0].slug)
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["user_clients"] = user_clients(self.request.user).select_related("tier")
        return context


class DashboardView(ClientPortalMixin, TemplateView):
    template_name = "portal/dashboard.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        monthly = revenue_by_month(client=self.client)
        context.update(
            summary=client_base_summary(client=self.client),
            monthly=monthly,
            chart={
                "labels": [m["month"] for m in monthly],
                "revenue": [float(m["revenue"]) for m in monthly],
                "buyers": [m["buyers"] for m in monthly],
            },
            tier=self.client.tier,
        )
        return context


class CustomerListView(ClientPortalMixin, ListView):
    """Exact look-ups only (email, phone in any spelling, external id): fast at 1M customers."""

    template_name = "portal/customers.html"
    paginate_by = 50
    context_object_name = "customers"

    def get_queryset(self):
        queryset = self.scoped(Customer).order_by("-updated_at", "-id")
        query = self.request.GET.get("q", "").strip()
        self.search_error = ""
        if query:
            if "@" in query:
                try:
                    return queryset.filter(email=normalize_email(query))
                except NormalizationError as exc:
                    self.search_error = str(exc)
                    return queryset.none()
            try:
                return queryset.filter(phone=normalize_phone(query))
            except NormalizationError:
                return queryset.filter(external_id=query)
        return queryset

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["query"] = self.request.GET.get("q", "")
        context["search_error"] = self.search_error
        return context


class CustomerDetailView(ClientPortalMixin, DetailView):
    template_name = "portal/customer_detail.html"
    context_object_name = "customer"

    def get_object(self, queryset=None):
        return self.get_scoped_object_or_404(Customer, pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["orders"] = (
            self.scoped(Order).filter(customer=self.object).order_by("-placed_at")[:100]
        )
        return context


class ImportJobListView(ClientPortalMixin, ListView):
    template_name = "portal/imports.html"
    context_object_name = "jobs"
    paginate_by = 25

    def get_queryset(self):
        return self.scoped(ImportJob).order_by("-created_at")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["running"] = any(
            j.status in (ImportJob.Status.PENDING, ImportJob.Status.RUNNING)
            for j in context["jobs"]
        )
        return context


class ImportJobErrorsView(ClientPortalMixin, View):
    """The rejected rows of one import as CSV; media files are never served publicly."""

    def get(self, request, *args, **kwargs):
        job = self.get_scoped_object_or_404(ImportJob, pk=kwargs["pk"])
        if not job.error_report:
            raise Http404("no error report")
        return FileResponse(
            job.error_report.open("rb"),
            as_attachment=True,
            filename=f"import-{job.pk}-errors.csv",
            content_type="text/csv; charset=utf-8",
        )


app_name = "portal"
urlpatterns = [
    path("", PortalHomeView.as_view(), name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="portal/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="portal:login"), name="logout"),
    path("<slug:client_slug>/", DashboardView.as_view(), name="dashboard"),
    path("<slug:client_slug>/customers/", CustomerListView.as_view(), name="customers"),
    path("<slug:client_slug>/customers/<int:pk>/", CustomerDetailView.as_view(), name="customer"),
    path("<slug:client_slug>/imports/", ImportJobListView.as_view(), name="imports"),
    path("<slug:client_slug>/audiences/", AudienceListView.as_view(), name="audiences"),
    path(
        "<slug:client_slug>/imports/<int:pk>/errors.csv",
        ImportJobErrorsView.as_view(),
        name="import_errors",
    ),
]
